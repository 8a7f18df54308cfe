package node

import (
	"context"
	"errors"

	"github.com/hiersip/hiersip/bootstrap"
	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// globalMember is the node's membership of the global overlay.
type globalMember struct {
	ov   *domains.Overlay
	boot *bootstrap.Bootstrapper
}

func (g *globalMember) close() error { return errors.Join(g.boot.Close(), g.ov.Close()) }

// JoinGlobal joins the node to the global overlay of proxies (a second
// kad-dht on the same host), bootstrapped from Config.Global, and returns it.
// While joined it returns the same overlay. The election runner calls it
// when the node becomes a proxy (DESIGN §4).
func (n *Node) JoinGlobal(ctx context.Context) (*domains.Overlay, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed() {
		return nil, ErrClosed
	}
	if n.global != nil {
		return n.global.ov, nil
	}
	opts := append([]domains.OverlayOption{domains.WithClock(n.cfg.Clock), domains.WithLogger(n.log),
		domains.WithRefusalHook(n.cfg.Metrics.Refused)}, n.cfg.lookupLimit()...)
	if n.enroll != nil {
		// Global storers that are members of this enrolled domain refuse its
		// records without a certificate of its authority.
		opts = append(opts, domains.WithAuthorities(map[string]crypto.PubKey{n.cfg.Domain: n.enroll.state.Authority()}))
	}
	ov, err := domains.NewGlobalOverlay(n.h, opts...)
	if err != nil {
		return nil, err
	}
	boot, err := n.newBootstrapper(ov, n.cfg.Global)
	if err != nil {
		return nil, errors.Join(&ConfigError{"global", err}, ov.Close())
	}
	if err := boot.Start(n.ctx); err != nil {
		return nil, errors.Join(err, ov.Close())
	}
	n.global = &globalMember{ov: ov, boot: boot}
	return ov, nil
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
	return g.close()
}

// GlobalOverlay returns the global overlay, or nil when the node is not in it.
func (n *Node) GlobalOverlay() *domains.Overlay {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.global == nil {
		return nil
	}
	return n.global.ov
}
