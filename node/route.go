package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/libp2p/go-libp2p/core/peer"
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
)

// ProxyCacheTTL is how long a proxy caches another domain's proxies.
const ProxyCacheTTL = 10 * time.Second

// proxyCache caches global-overlay lookups of other domains' proxies, and
// keeps the last record accepted for each domain (chain) until it expires:
// a new record replaces it only if it continues its chain of custody
// (domains.ProxySupersedes).
type proxyCache struct {
	mu      sync.Mutex
	entries map[string]proxyCacheEntry
	chain   map[string]*domains.ProxyRecord
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
		if len(c.chain) > 4096 {
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

type proxyCacheEntry struct {
	rec     *domains.ProxyRecord
	domain  string // the domain the record is of
	expires time.Time
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
	if len(c.entries) > 4096 { // bounded: drop everything rather than grow
		clear(c.entries)
	}
	c.entries[host] = e
}

// Forget drops the cached proxies of the domain of host, after a forward to
// them failed, so the next request looks them up again.
func (n *Node) Forget(host string) {
	n.proxies.mu.Lock()
	defer n.proxies.mu.Unlock()
	delete(n.proxies.entries, host)
}

// TargetDomain returns the domain of an AOR host as far as this node knows it
// (own and configured domains; else the top-level label).
func (n *Node) TargetDomain(host string) string {
	d, _ := domains.DomainOf(host, n.KnownDomains())
	return d
}

// RemoteProxies returns the proxies of the domain that host belongs to, as
// published in the global overlay (draft Figure 3, F5/F6), best first, and
// that domain's name. The node must be a proxy (in the global overlay). The
// host's suffixes are tried longest first ("a.b.c", "b.c", "c"); results are
// cached for ProxyCacheTTL.
func (n *Node) RemoteProxies(ctx context.Context, host string) (string, []peer.AddrInfo, error) {
	now := n.cfg.Clock.Now()
	if e, ok := n.proxies.get(host, now); ok {
		start := time.Now()
		if e.rec == nil {
			err := fmt.Errorf("%w: %s", ErrUnknownDomain, host)
			n.traceLookup(start, overlayGlobal, "proxy", overlayURI(n.TargetDomain(host)), SourceCache, nil, err)
			return "", nil, err
		}
		n.traceLookup(start, overlayGlobal, "proxy", overlayURI(e.domain), SourceCache, recordProxies(e.rec), nil)
		return e.domain, e.rec.Proxies, nil
	}
	candidates := domains.DomainCandidates(host)
	if d, ok := domains.DomainOf(host, n.KnownDomains()); ok {
		candidates = []string{d}
	}
	var errs []error
	for _, d := range candidates {
		if domains.ValidateDomain(d) != nil {
			continue
		}
		rec, err := n.DomainProxies(ctx, d)
		if err == nil {
			got, ok := n.proxies.accept(d, rec, now)
			if !ok {
				// The lookup settled on a record that does not continue the
				// chain this node holds for d: never route d's calls to it.
				n.cfg.Metrics.Refused("proxy", domains.ReasonNoEvidence)
				n.log.Warn("proxy record without evidence refused", "domain", d, "signer", rec.Signer, "epoch", rec.Epoch,
					"held", got.Signer, "held_epoch", got.Epoch)
			}
			n.proxies.put(host, proxyCacheEntry{rec: got, domain: d, expires: now.Add(ProxyCacheTTL)})
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
	n.proxies.put(host, proxyCacheEntry{expires: now.Add(ProxyCacheTTL / 5)})
	return "", nil, fmt.Errorf("%w: %s", ErrUnknownDomain, host)
}

// OwnProxies returns the proxies of the node's own domain (draft Figure 3,
// F1/F2), other than the node itself.
func (n *Node) OwnProxies(ctx context.Context) ([]peer.AddrInfo, error) {
	rec, err := n.LocalProxies(ctx)
	if errors.Is(err, domains.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s has not elected a proxy", ErrNoProxy, n.cfg.Domain)
	}
	if err != nil {
		return nil, err
	}
	var out []peer.AddrInfo
	for _, p := range rec.Proxies {
		if p.ID != n.ID() {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: this node is %s's only proxy", ErrNoProxy, n.cfg.Domain)
	}
	return out, nil
}

// IsMember reports whether peer p is a member of the node's domain as far as
// the node can tell cheaply: the node itself, a peer in the domain overlay's
// routing table, or a peer whose identify record lists the domain's DHT
// protocol (/hiersip/<domain>/kad/1.0.0). A proxy relays inter-domain
// requests only for members (sipbridge.WithMembership): a peer that is only
// in the global overlay cannot use it as an open SIP relay.
func (n *Node) IsMember(p peer.ID) bool {
	if p == n.ID() {
		return true
	}
	if n.domain.DHT().RoutingTable().Find(p) != "" {
		return true
	}
	ps, err := n.h.Peerstore().SupportsProtocols(p, n.domain.Protocol())
	return err == nil && len(ps) > 0
}
