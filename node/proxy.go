package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/election"
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
	epoch    uint64
	proxies  []peer.ID
	electors []peer.ID // the roster: who may endorse the next proxy
	extra    []domains.Endorsement
	endorsed atomic.Int64 // endorsements the last published record carried
	cancel   context.CancelFunc
	done     chan struct{}
}

// BecomeProxy performs a proxy's duties for election epoch (draft §6): it
// joins the global overlay, publishes the domain's Overlay-Resource-ID →
// proxies there and the "local proxy" record in the domain overlay, and keeps
// re-publishing them until StepDown or Close. proxies lists the domain's
// active proxies, best first; this node must be among them (it is put first
// if not). Only the first of them publishes the records.
//
// The records name the domain's electors (the election's roster: proxies
// and candidates; without election, proxies) and carry the endorsements the
// node holds for epoch: its roster's (Runner.Endorsements) and those given
// here (a predecessor's, see Endorse). A record of a new proxy replaces its
// predecessor's only with endorsements of a majority of the predecessor's
// electors (package domains); the node re-publishes as soon as it holds
// more endorsements.
func (n *Node) BecomeProxy(ctx context.Context, epoch uint64, proxies []peer.ID, endorsements ...domains.Endorsement) error {
	if n.closed() {
		return ErrClosed
	}
	if !containsPeer(proxies, n.ID()) {
		proxies = append([]peer.ID{n.ID()}, proxies...)
	}
	electors := slices.Clone(proxies)
	if r := n.election; r != nil {
		if st := r.State(); st.Epoch == epoch {
			electors = electors[:0]
			for _, m := range append(st.Proxies, st.Candidates...) {
				electors = append(electors, m.ID)
			}
			if !containsPeer(electors, n.ID()) {
				electors = append([]peer.ID{n.ID()}, electors...)
			}
		}
	}
	if len(electors) > domains.MaxElectors {
		electors = electors[:domains.MaxElectors]
	}
	g, err := n.JoinGlobal(ctx)
	if err != nil {
		return err
	}
	n.stopProxyRole()
	rctx, cancel := context.WithCancel(n.ctx)
	role := &proxyRole{epoch: epoch, proxies: proxies, electors: electors, extra: endorsements,
		cancel: cancel, done: make(chan struct{})}
	n.mu.Lock()
	n.proxy = role
	n.mu.Unlock()
	var states <-chan election.State
	stop := func() {}
	if r := n.election; r != nil {
		states, stop = r.Subscribe() // before the first publish: no endorsement slips between
	}
	err = n.publishProxy(ctx, g, role)
	go func() {
		defer close(role.done)
		defer stop()
		t := n.cfg.Clock.Ticker(ProxyRepublish)
		defer t.Stop()
		publish := func() {
			pctx, c := context.WithTimeout(rctx, ProxyRepublish)
			if err := n.publishProxy(pctx, g, role); err != nil && rctx.Err() == nil {
				n.log.Warn("re-publish proxy records failed", "err", err)
			}
			c()
		}
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				publish()
			case st, ok := <-states:
				if !ok {
					states = nil
					continue
				}
				// New endorsements of this epoch: publish at once, so that
				// the record replaces the predecessor's.
				if st.Epoch == role.epoch && len(st.Endorsed) > int(role.endorsed.Load()) {
					publish()
				}
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
	if len(role.proxies) > 0 && role.proxies[0] != n.ID() {
		return nil // the leading proxy publishes the domain's records
	}
	now := n.cfg.Clock.Now()
	rec := &domains.ProxyRecord{
		Domain: n.cfg.Domain, Signer: n.ID(), Epoch: role.epoch, Electors: role.electors,
		Issued: now, Expires: now.Add(ProxyRecordTTL),
	}
	var ends []domains.Endorsement
	if r := n.election; r != nil {
		ends = r.Endorsements(role.epoch)
	}
	rec.Endorsements = n.pickEndorsements(ctx, g, append(role.extra, ends...))
	role.endorsed.Store(int64(len(ends)))
	if n.enroll != nil {
		rec.Authority = n.enroll.state.Authority()
		if rec.Cert = n.memberCert(); rec.Cert == nil {
			return fmt.Errorf("%w: this node holds no valid certificate of %s's authority", ErrNoCertificate, n.cfg.Domain)
		}
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

// pickEndorsements chooses the endorsements a proxy record carries (at most
// domains.MaxElectors): those of the electors of the domain's current
// record first, as only they count towards replacing it.
func (n *Node) pickEndorsements(ctx context.Context, g *domains.Overlay, all []domains.Endorsement) []domains.Endorsement {
	uniq := all[:0:0]
	for _, en := range all {
		if !slices.ContainsFunc(uniq, func(u domains.Endorsement) bool { return u.Peer == en.Peer }) {
			uniq = append(uniq, en)
		}
	}
	if len(uniq) <= domains.MaxElectors {
		return uniq
	}
	all = uniq
	var prev []peer.ID
	for _, ov := range []*domains.Overlay{n.domain, g} {
		if cur, err := ov.StoredProxyRecord(ctx, n.cfg.Domain); err == nil {
			prev = append(prev, cur.Electors...)
		} else if cur, err := ov.GetProxyRecord(ctx, n.cfg.Domain); err == nil {
			prev = append(prev, cur.Electors...)
		}
	}
	seen := map[peer.ID]bool{}
	var out []domains.Endorsement
	for _, first := range []bool{true, false} {
		for _, en := range all {
			if seen[en.Peer] || containsPeer(prev, en.Peer) != first || len(out) >= domains.MaxElectors {
				continue
			}
			seen[en.Peer] = true
			out = append(out, en)
		}
	}
	return out
}

// Endorse signs, with the node's key, that signer is the domain's proxy at
// epoch: what a leaving proxy gives its successor (BecomeProxy's
// endorsements), and what the election's members send their leader.
func (n *Node) Endorse(epoch uint64, signer peer.ID) (domains.Endorsement, error) {
	return domains.Endorse(n.key, n.cfg.Domain, epoch, signer)
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
