package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
)

// Errors of inter-domain routing.
var (
	// ErrUnknownDomain: no domain of the target host has an
	// Overlay-Resource-ID in the global overlay.
	// It wraps domains.ErrNotFound (the SIP bridge answers 404).
	ErrUnknownDomain = fmt.Errorf("node: unknown domain: %w", domains.ErrNotFound)
	// ErrNoProxy: no proxy to route through right now. It wraps
	// sipbridge.ErrUnavailable (the SIP bridge answers 503 with Retry-After).
	ErrNoProxy = fmt.Errorf("node: no proxy available: %w", sipbridge.ErrUnavailable)
	// ErrNotProxy: a lookup in the global overlay by a node that is not a
	// proxy (only proxies are in it).
	ErrNotProxy = errors.New("node: not a proxy")
)

// ProxyCacheTTL is how long a proxy caches another domain's proxies.
const ProxyCacheTTL = 10 * time.Second

// ProxyDialTimeout bounds a connection attempt to a proxy when routing.
const ProxyDialTimeout = 2 * time.Second

// router routes SIP out of the node's domain (draft §6.2, Figure 3); its
// nextHop is the sipbridge.ProxyResolver of the node's bridge. A proxy finds
// the target domain's proxies in the global overlay (F5/F6) and caches them
// (proxyCache); any other node sends to its own domain's proxy, as its
// election announced it or as the domain overlay's proxy record names it
// (F1/F2).
type router struct {
	domain  string
	known   []string // the node's domain and the configured known domains
	self    peer.ID
	h       host.Host
	ov      *domains.Overlay
	global  func() *domains.Overlay // the global overlay; nil while not in it
	isProxy func() bool
	elected func() []peer.ID // the domain's proxies as its election announced them; nil without an election
	clock   clock.Clock
	lookups *lookups
	metrics *Metrics
	log     *slog.Logger

	cache proxyCache
}

var _ sipbridge.ProxyResolver = (*router)(nil).nextHop

// nextHop is the route of a target outside the node's domain: a proxy sends
// it to a proxy of the target's domain, found in the global overlay (draft
// Figure 3, F5–F7); any other node sends it to its own domain's proxy
// (F1–F3). The first proxy that can be reached is chosen; a proxy with a
// stale cache looks the domain up again before it gives up.
func (r *router) nextHop(ctx context.Context, target domains.AOR) (peer.AddrInfo, error) {
	if r.isProxy() {
		known := false // the domain had proxies a moment ago (cached record)
		for range 2 {
			dom, proxies, err := r.remoteProxies(ctx, target.Host)
			if err != nil {
				if known && errors.Is(err, ErrUnknownDomain) {
					// Its proxies held the only copies of its record and are gone:
					// the domain is down, not unknown.
					return peer.AddrInfo{}, fmt.Errorf("%w: every proxy of the domain of %s is unreachable", ErrNoProxy, target.Host)
				}
				return peer.AddrInfo{}, err
			}
			known = len(proxies) > 0
			if p, ok := r.firstReachable(ctx, proxies); ok {
				return p, nil
			}
			r.forget(target.Host)
			r.log.Info("no proxy of the target domain reachable", "target_domain", dom, "proxies", len(proxies))
		}
		return peer.AddrInfo{}, fmt.Errorf("%w: every proxy of the domain of %s is unreachable", ErrNoProxy, target.Host)
	}
	start := time.Now()
	var proxies []peer.AddrInfo
	for _, id := range r.elected() {
		if id != r.self {
			proxies = append(proxies, r.h.Peerstore().PeerInfo(id))
		}
	}
	if len(proxies) > 0 {
		r.lookups.traced(start, overlayDomain, "proxy", domains.OverlayURI(r.domain), SourceElection, proxyIDs(proxies), nil)
	} else {
		var err error
		if proxies, err = r.ownProxies(ctx); err != nil {
			return peer.AddrInfo{}, err
		}
	}
	if p, ok := r.firstReachable(ctx, proxies); ok {
		return p, nil
	}
	return peer.AddrInfo{}, fmt.Errorf("%w: the proxies of %s are unreachable", ErrNoProxy, r.domain)
}

// firstReachable returns the first of ps the host is connected to or can
// connect to (within ProxyDialTimeout each, on the system clock).
func (r *router) firstReachable(ctx context.Context, ps []peer.AddrInfo) (peer.AddrInfo, bool) {
	for _, p := range ps {
		if p.ID != r.self && r.h.Network().Connectedness(p.ID) == network.Connected {
			return p, true
		}
	}
	for _, p := range ps {
		if p.ID == r.self {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, ProxyDialTimeout)
		err := r.h.Connect(network.WithAllowLimitedConn(cctx, "sip"), p)
		cancel()
		if err == nil {
			return p, true
		}
		r.log.Debug("proxy unreachable", "proxy", p.ID, "err", err)
	}
	return peer.AddrInfo{}, false
}

// targetDomain returns the domain of an AOR host as far as this node knows
// it (own and configured domains; else the top-level label).
func (r *router) targetDomain(host string) string {
	d, _ := domains.DomainOf(host, r.known)
	return d
}

// remoteProxies returns the proxies of the domain that host belongs to, as
// published in the global overlay (draft Figure 3, F5/F6), best first, and
// that domain's name. The node must be a proxy (in the global overlay). The
// host's suffixes are tried longest first ("a.b.c", "b.c", "c"); results are
// cached for ProxyCacheTTL of the node's clock.
func (r *router) remoteProxies(ctx context.Context, host string) (string, []peer.AddrInfo, error) {
	now := r.clock.Now()
	if e, ok := r.cache.get(host, now); ok {
		start := time.Now()
		if e.rec == nil {
			err := fmt.Errorf("%w: %s", ErrUnknownDomain, host)
			r.lookups.traced(start, overlayGlobal, "proxy", domains.OverlayURI(r.targetDomain(host)), SourceCache, nil, err)
			return "", nil, err
		}
		r.lookups.traced(start, overlayGlobal, "proxy", domains.OverlayURI(e.domain), SourceCache, recordProxies(e.rec, nil), nil)
		return e.domain, e.rec.Proxies, nil
	}
	candidates := domains.DomainCandidates(host)
	if d, ok := domains.DomainOf(host, r.known); ok {
		candidates = []string{d}
	}
	var errs []error
	for _, d := range candidates {
		if domains.ValidateDomain(d) != nil {
			continue
		}
		rec, err := r.domainProxies(ctx, d)
		if err == nil {
			got, ok := r.cache.accept(d, rec, now)
			if !ok {
				// The lookup settled on a record that does not continue the
				// chain this node holds for d: never route d's calls to it.
				r.metrics.refuse("proxy", domains.ReasonNoEvidence)
				r.log.Warn("proxy record without evidence refused", "domain", d, "signer", rec.Signer, "epoch", rec.Epoch,
					"held", got.Signer, "held_epoch", got.Epoch)
			}
			r.cache.put(host, proxyCacheEntry{rec: got, domain: d, expires: now.Add(ProxyCacheTTL)})
			return d, got.Proxies, nil
		}
		if !errors.Is(err, domains.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return "", nil, fmt.Errorf("%w for %s: %w", ErrNoProxy, host, errors.Join(errs...))
	}
	// Negative answers are cached briefly too: a flood to a bogus domain
	// must not turn into a flood of global lookups.
	r.cache.put(host, proxyCacheEntry{expires: now.Add(ProxyCacheTTL / 5)})
	return "", nil, fmt.Errorf("%w: %s", ErrUnknownDomain, host)
}

// forget drops the cached proxies of the domain of host, after a forward to
// them failed, so the next request looks them up again.
func (r *router) forget(host string) { r.cache.drop(host) }

// ownProxies returns the proxies of the node's own domain (draft Figure 3,
// F1/F2), other than the node itself.
func (r *router) ownProxies(ctx context.Context) ([]peer.AddrInfo, error) {
	rec, err := r.localProxies(ctx)
	if errors.Is(err, domains.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s has not elected a proxy", ErrNoProxy, r.domain)
	}
	if err != nil {
		return nil, err
	}
	var out []peer.AddrInfo
	for _, p := range rec.Proxies {
		if p.ID != r.self {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: this node is %s's only proxy", ErrNoProxy, r.domain)
	}
	return out, nil
}

// localProxies returns the proxies of the node's own domain as published in
// the domain overlay (draft Figure 3, F1/F2).
func (r *router) localProxies(ctx context.Context) (*domains.ProxyRecord, error) {
	return lookup(r.lookups, ctx, overlayDomain, "proxy", domains.OverlayURI(r.domain),
		func(ctx context.Context) (*domains.ProxyRecord, error) { return r.ov.GetProxyRecord(ctx, r.domain) },
		recordProxies)
}

// domainProxies resolves another domain's Overlay-Resource-ID in the global
// overlay (draft Figure 3, F5/F6). Only proxies are in the global overlay:
// other nodes get ErrNotProxy.
func (r *router) domainProxies(ctx context.Context, domain string) (*domains.ProxyRecord, error) {
	g := r.global()
	if g == nil {
		return nil, ErrNotProxy
	}
	return lookup(r.lookups, ctx, overlayGlobal, "proxy", domains.OverlayURI(domain),
		func(ctx context.Context) (*domains.ProxyRecord, error) { return g.GetProxyRecord(ctx, domain) },
		recordProxies)
}

// proxyCache caches global-overlay lookups of other domains' proxies, and
// keeps the last record accepted for each domain (chain) until it expires:
// a new record replaces it only if it continues its chain of custody
// (domains.ProxySupersedes). Both maps are bounded.
type proxyCache struct {
	mu      sync.Mutex
	entries map[string]proxyCacheEntry
	chain   map[string]*domains.ProxyRecord
}

// maxProxyCache bounds each map of the cache: past it, it starts over
// rather than grow.
const maxProxyCache = 4096

type proxyCacheEntry struct {
	rec     *domains.ProxyRecord
	domain  string // the domain the record is of
	expires time.Time
}

// accept returns the record to route domain d's calls by: rec if it is the
// first one seen, continues the one held, or the one held has expired; else
// the one held (and false).
func (c *proxyCache) accept(d string, rec *domains.ProxyRecord, now time.Time) (*domains.ProxyRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.chain == nil {
		c.chain = make(map[string]*domains.ProxyRecord)
	}
	prev, ok := c.chain[d]
	switch {
	case !ok || !now.Before(prev.Expires) || domains.ProxySupersedes(rec, prev) || sameRecord(rec, prev):
		if len(c.chain) > maxProxyCache {
			clear(c.chain)
		}
		c.chain[d] = rec
		return rec, true
	case domains.ProxySupersedes(prev, rec):
		return prev, true // an older record of the chain: keep the newer one
	}
	return prev, false
}

func sameRecord(a, b *domains.ProxyRecord) bool {
	return a.Signer == b.Signer && a.Epoch == b.Epoch && a.Issued.Equal(b.Issued)
}

func (c *proxyCache) get(host string, now time.Time) (proxyCacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[host]
	if !ok || now.After(e.expires) {
		return proxyCacheEntry{}, false
	}
	return e, true
}

func (c *proxyCache) put(host string, e proxyCacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]proxyCacheEntry)
	}
	if len(c.entries) > maxProxyCache {
		clear(c.entries)
	}
	c.entries[host] = e
}

func (c *proxyCache) drop(host string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, host)
}

// all returns the proxies of every live cache entry (relay candidates).
func (c *proxyCache) all(now time.Time) []peer.AddrInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []peer.AddrInfo
	for _, e := range c.entries {
		if e.rec != nil && !now.After(e.expires) {
			out = append(out, e.rec.Proxies...)
		}
	}
	return out
}
