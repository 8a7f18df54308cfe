package node

import (
	"context"

	"github.com/hiersip/hiersip/domains"
)

// JoinGlobal joins the node to the global overlay of proxies (a second
// kad-dht on the same host) and returns it. It is idempotent: while joined it
// returns the same overlay. Proxies join it (DESIGN §4); the election runner
// calls this when the node becomes a proxy.
func (n *Node) JoinGlobal(ctx context.Context) (*domains.Overlay, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed() {
		return nil, ErrClosed
	}
	if n.global != nil {
		return n.global, nil
	}
	g, err := domains.NewGlobalOverlay(n.h, domains.WithClock(n.cfg.Now), domains.WithLogger(n.log))
	if err != nil {
		return nil, err
	}
	n.global = g
	return g, nil
}

// LeaveGlobal leaves the global overlay; the node stays in its domain.
func (n *Node) LeaveGlobal() error {
	n.mu.Lock()
	g := n.global
	n.global = nil
	n.mu.Unlock()
	if g == nil {
		return nil
	}
	return g.Close()
}

// GlobalOverlay returns the global overlay, or nil when the node is not in it.
func (n *Node) GlobalOverlay() *domains.Overlay {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.global
}
