package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/election"
)

// Proxy-record timing: records live ProxyRecordTTL and are re-published every
// ProxyRepublish, so a dead proxy stops attracting traffic within a minute
// while a failover's new record (higher epoch) wins at once.
const (
	ProxyRecordTTL = time.Minute
	ProxyRepublish = 20 * time.Second
)

// proxyDuties performs a proxy's duties (draft §6) for the election: it is
// the runner's election.Duties. While the node is a proxy it is in the
// global overlay and publishes its domain's proxy record there (the
// Overlay-Resource-ID) and in the domain overlay ("local proxy"), and
// re-publishes it every ProxyRepublish of the node's clock, when its
// addresses change, and as soon as it holds more endorsements.
type proxyDuties struct {
	ctx        context.Context // the node's life
	domain     string
	self       peer.ID
	key        crypto.PrivKey
	h          host.Host // the other proxies' addresses, from its peerstore
	ov         *domains.Overlay
	global     *globalMembership
	keepGlobal bool                  // a global seed stays in the global overlay
	addrs      func() []ma.Multiaddr // the addresses put into records
	enroll     *enrollment           // nil: an open domain
	clock      clock.Clock
	log        *slog.Logger
	// endorser is the election runner, set before it starts (nil without an
	// election).
	endorser endorser

	mu   sync.Mutex
	role *proxyRole
}

// endorser is what the duties read of the election while they serve: the
// endorsements of this node as leader that it holds, and when they change.
type endorser interface {
	Endorsements(epoch uint64) []domains.Endorsement
	Subscribe() (<-chan election.State, func())
}

var _ election.Duties = (*proxyDuties)(nil)

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

// Promote makes the node its domain's proxy for the promotion's epoch, with
// its proxies and, as the next proxy's electors, its proxies and candidates.
func (d *proxyDuties) Promote(ctx context.Context, p election.Promotion) error {
	return d.become(ctx, p.Epoch, p.Proxies, append(slices.Clone(p.Proxies), p.Candidates...), p.Endorsements...)
}

// Demote ends the proxy role.
func (d *proxyDuties) Demote(ctx context.Context) error { return d.stepDown(ctx) }

// become performs a proxy's duties for epoch: it joins the global overlay,
// publishes the domain's proxy record there and in the domain overlay, and
// keeps re-publishing it until stepDown or the node's end. proxies lists the
// domain's active proxies, best first; this node must be among them (it is
// put first if not). Only the first of them publishes the records.
//
// The records name the domain's electors (the election's roster: proxies
// and candidates; without election, proxies) and carry the endorsements the
// node holds for epoch: those given here (the runner's at promotion, or a
// predecessor's handoff) and those the runner collects later. A record of a
// new proxy replaces its predecessor's only with endorsements of a majority
// of the predecessor's electors (package domains).
func (d *proxyDuties) become(ctx context.Context, epoch uint64, proxies, electors []peer.ID, endorsements ...domains.Endorsement) error {
	if d.ctx.Err() != nil {
		return ErrClosed
	}
	if !slices.Contains(proxies, d.self) {
		proxies = append([]peer.ID{d.self}, proxies...)
	}
	if len(electors) == 0 {
		electors = slices.Clone(proxies)
	}
	if !slices.Contains(electors, d.self) {
		electors = append([]peer.ID{d.self}, electors...)
	}
	if len(electors) > domains.MaxElectors {
		electors = electors[:domains.MaxElectors]
	}
	g, err := d.global.join(ctx)
	if err != nil {
		return err
	}
	d.stop()
	rctx, cancel := context.WithCancel(d.ctx)
	role := &proxyRole{epoch: epoch, proxies: proxies, electors: electors, extra: endorsements,
		cancel: cancel, done: make(chan struct{})}
	d.mu.Lock()
	d.role = role
	d.mu.Unlock()
	var states <-chan election.State
	unsubscribe := func() {}
	if d.endorser != nil {
		states, unsubscribe = d.endorser.Subscribe() // before the first publish: no endorsement slips between
	}
	err = d.publish(ctx, g, role)
	go d.serve(rctx, g, role, states, unsubscribe)
	if err != nil {
		return fmt.Errorf("node: publish proxy records: %w", err)
	}
	d.log.Info("became proxy", "epoch", epoch)
	return nil
}

// serve re-publishes role's records until rctx ends: every ProxyRepublish
// of the clock, and when the election holds more endorsements of its epoch.
func (d *proxyDuties) serve(rctx context.Context, g *domains.Overlay, role *proxyRole, states <-chan election.State, unsubscribe func()) {
	defer close(role.done)
	defer unsubscribe()
	t := d.clock.Ticker(ProxyRepublish)
	defer t.Stop()
	publish := func() {
		pctx, cancel := context.WithTimeout(rctx, ProxyRepublish)
		defer cancel()
		if err := d.publish(pctx, g, role); err != nil && rctx.Err() == nil {
			d.log.Warn("re-publish proxy records failed", "err", err)
		}
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
}

// stepDown ends the proxy role: it stops re-publishing the proxy records
// (they lapse within ProxyRecordTTL, or are superseded by the successor's
// higher epoch at once) and leaves the global overlay, unless the node is a
// global seed.
func (d *proxyDuties) stepDown(ctx context.Context) error {
	if !d.stop() {
		return nil
	}
	d.log.Info("stepped down as proxy")
	if d.keepGlobal {
		return nil
	}
	return d.global.leave(ctx)
}

// stop stops the role's re-publishing and reports whether there was a role.
func (d *proxyDuties) stop() bool {
	d.mu.Lock()
	role := d.role
	d.role = nil
	d.mu.Unlock()
	if role == nil {
		return false
	}
	role.cancel()
	<-role.done
	return true
}

// isProxy reports whether the node currently acts as a proxy.
func (d *proxyDuties) isProxy() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.role != nil
}

// republishNow re-publishes the proxy records now, if the node is a proxy
// (its addresses changed).
func (d *proxyDuties) republishNow() {
	d.mu.Lock()
	role := d.role
	d.mu.Unlock()
	g := d.global.overlay()
	if role == nil || g == nil {
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, ProxyRepublish)
	defer cancel()
	if err := d.publish(ctx, g, role); err != nil && d.ctx.Err() == nil {
		d.log.Warn("re-publish proxy records failed", "err", err)
	}
}

func (d *proxyDuties) publish(ctx context.Context, g *domains.Overlay, role *proxyRole) error {
	if len(role.proxies) > 0 && role.proxies[0] != d.self {
		return nil // the leading proxy publishes the domain's records
	}
	now := d.clock.Now()
	rec := &domains.ProxyRecord{
		Domain: d.domain, Signer: d.self, Epoch: role.epoch, Electors: role.electors,
		Issued: now, Expires: now.Add(ProxyRecordTTL),
	}
	var ends []domains.Endorsement
	if d.endorser != nil {
		ends = d.endorser.Endorsements(role.epoch)
	}
	rec.Endorsements = d.pickEndorsements(ctx, g, append(slices.Clone(role.extra), ends...))
	role.endorsed.Store(int64(len(ends)))
	if d.enroll != nil {
		rec.Authority = d.enroll.state.Authority()
		if rec.Cert = d.enroll.memberCert(); rec.Cert == nil {
			return fmt.Errorf("%w: this node holds no valid certificate of %s's authority", ErrNoCertificate, d.domain)
		}
	}
	for _, id := range role.proxies {
		ai := d.h.Peerstore().PeerInfo(id)
		if id == d.self {
			ai.Addrs = d.addrs()
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
		g.PutProxyRecord(ctx, d.key, rec),
		d.ov.PutProxyRecord(ctx, d.key, rec),
	)
}

// pickEndorsements chooses the endorsements a proxy record carries (at most
// domains.MaxElectors, one per elector): those of the electors of the
// domain's current record first, as only they count towards replacing it.
func (d *proxyDuties) pickEndorsements(ctx context.Context, g *domains.Overlay, all []domains.Endorsement) []domains.Endorsement {
	uniq := all[:0:0]
	for _, en := range all {
		if !slices.ContainsFunc(uniq, func(u domains.Endorsement) bool { return u.Peer == en.Peer }) {
			uniq = append(uniq, en)
		}
	}
	if len(uniq) <= domains.MaxElectors {
		return uniq
	}
	var prev []peer.ID
	for _, ov := range []*domains.Overlay{d.ov, g} {
		if cur, err := ov.StoredProxyRecord(ctx, d.domain); err == nil {
			prev = append(prev, cur.Electors...)
		} else if cur, err := ov.GetProxyRecord(ctx, d.domain); err == nil {
			prev = append(prev, cur.Electors...)
		}
	}
	var out []domains.Endorsement
	for _, first := range []bool{true, false} {
		for _, en := range uniq {
			if slices.Contains(prev, en.Peer) == first && len(out) < domains.MaxElectors {
				out = append(out, en)
			}
		}
	}
	return out
}

// endorse signs, with the node's key, that signer is the domain's proxy at
// epoch: what a leaving proxy gives its successor, and what the election's
// members send their leader.
func (d *proxyDuties) endorse(epoch uint64, signer peer.ID) (domains.Endorsement, error) {
	return domains.Endorse(d.key, d.domain, epoch, signer)
}
