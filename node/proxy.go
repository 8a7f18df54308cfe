package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Proxy-record timing: records live ProxyRecordTTL and are re-published every
// ProxyRepublish, so a dead proxy stops attracting traffic within a minute
// while a failover's new record (higher epoch) wins at once.
const (
	ProxyRecordTTL = time.Minute
	ProxyRepublish = 20 * time.Second
)

// ErrNotProxy is returned by proxy operations on a node that is not a proxy.
var ErrNotProxy = errors.New("node: not a proxy")

// proxyRole is what a proxy node publishes.
type proxyRole struct {
	epoch   uint64
	proxies []peer.ID
	cancel  context.CancelFunc
	done    chan struct{}
}

// BecomeProxy performs a proxy's duties for election epoch (draft §6): it
// joins the global overlay, publishes the domain's Overlay-Resource-ID →
// proxies there and the "local proxy" record in the domain overlay, and keeps
// re-publishing them until StepDown or Close. proxies lists the domain's
// active proxies, best first; this node must be among them.
func (n *Node) BecomeProxy(ctx context.Context, epoch uint64, proxies []peer.ID) error {
	if n.closed() {
		return ErrClosed
	}
	if !containsPeer(proxies, n.ID()) {
		proxies = append([]peer.ID{n.ID()}, proxies...)
	}
	g, err := n.JoinGlobal(ctx)
	if err != nil {
		return err
	}
	n.stopProxyRole()
	rctx, cancel := context.WithCancel(n.ctx)
	role := &proxyRole{epoch: epoch, proxies: proxies, cancel: cancel, done: make(chan struct{})}
	n.mu.Lock()
	n.proxy = role
	n.mu.Unlock()
	err = n.publishProxy(ctx, g, role)
	go func() {
		defer close(role.done)
		t := time.NewTicker(ProxyRepublish)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				pctx, c := context.WithTimeout(rctx, ProxyRepublish)
				if err := n.publishProxy(pctx, g, role); err != nil && rctx.Err() == nil {
					n.log.Warn("re-publish proxy records failed", "err", err)
				}
				c()
			}
		}
	}()
	if err != nil {
		return fmt.Errorf("node: publish proxy records: %w", err)
	}
	n.log.Info("became proxy", "epoch", epoch)
	return nil
}

// StepDown ends the proxy role: it stops re-publishing the proxy records
// (they lapse within ProxyRecordTTL, or are superseded by the successor's
// higher epoch at once) and leaves the global overlay.
func (n *Node) StepDown() error {
	if !n.stopProxyRole() {
		return nil
	}
	n.log.Info("stepped down as proxy")
	if n.cfg.GlobalSeed {
		return nil
	}
	return n.LeaveGlobal()
}

func (n *Node) stopProxyRole() bool {
	n.mu.Lock()
	role := n.proxy
	n.proxy = nil
	n.mu.Unlock()
	if role == nil {
		return false
	}
	role.cancel()
	<-role.done
	return true
}

// IsProxy reports whether the node currently acts as a proxy.
func (n *Node) IsProxy() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proxy != nil
}

func (n *Node) publishProxy(ctx context.Context, g *domains.Overlay, role *proxyRole) error {
	now := n.cfg.Now()
	rec := &domains.ProxyRecord{
		Domain: n.cfg.Domain, Signer: n.ID(), Epoch: role.epoch,
		Issued: now, Expires: now.Add(ProxyRecordTTL),
	}
	for _, id := range role.proxies {
		ai := n.h.Peerstore().PeerInfo(id)
		if id == n.ID() {
			ai.Addrs = n.advertisedAddrs()
		}
		if len(ai.Addrs) > domains.MaxAddrs {
			ai.Addrs = ai.Addrs[:domains.MaxAddrs]
		}
		rec.Proxies = append(rec.Proxies, ai)
		if len(rec.Proxies) == domains.MaxProxies {
			break
		}
	}
	return errors.Join(
		g.PutProxyRecord(ctx, n.key, rec),
		n.domain.PutProxyRecord(ctx, n.key, rec),
	)
}

// LocalProxies returns the proxies of the node's own domain as published in
// the domain overlay (draft Figure 3, F1/F2).
func (n *Node) LocalProxies(ctx context.Context) (*domains.ProxyRecord, error) {
	if n.closed() {
		return nil, ErrClosed
	}
	ctx, cancel := n.lookupContext(ctx)
	defer cancel()
	start := time.Now()
	rec, err := n.domain.GetProxyRecord(ctx, n.cfg.Domain)
	n.cfg.Metrics.observeLookup(overlayDomain, "proxy", time.Since(start), err)
	n.traceLookup(start, overlayDomain, "proxy", overlayURI(n.cfg.Domain), SourceOverlay, recordProxies(rec), err)
	return rec, err
}

// DomainProxies resolves another domain's Overlay-Resource-ID in the global
// overlay (draft Figure 3, F5/F6). Only proxies are in the global overlay:
// other nodes get ErrNotProxy.
func (n *Node) DomainProxies(ctx context.Context, domain string) (*domains.ProxyRecord, error) {
	g := n.GlobalOverlay()
	if g == nil {
		return nil, ErrNotProxy
	}
	ctx, cancel := n.lookupContext(ctx)
	defer cancel()
	start := time.Now()
	rec, err := g.GetProxyRecord(ctx, domain)
	n.cfg.Metrics.observeLookup(overlayGlobal, "proxy", time.Since(start), err)
	n.traceLookup(start, overlayGlobal, "proxy", overlayURI(domain), SourceOverlay, recordProxies(rec), err)
	return rec, err
}

func (n *Node) lookupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.cfg.LookupTimeout)
}

func containsPeer(ps []peer.ID, p peer.ID) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}
