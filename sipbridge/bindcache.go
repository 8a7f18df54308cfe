package sipbridge

import (
	"sync"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// DefaultLookupCacheTTL is how long a node reuses an AOR's binding from the
// domain overlay for routing before it looks the AOR up again.
const DefaultLookupCacheTTL = 5 * time.Second

// maxCachedBindings bounds the cache; when full it starts over.
const maxCachedBindings = 16384

// WithLookupCache sets how long the routing of requests reuses the result of
// a Locator.Lookup (0 disables the cache). Without the cache every request to
// an AOR of another node of the domain, the ACK and the BYE of each call
// included, costs a lookup in the domain overlay: several kad-dht queries
// and a signature check per value received.
//
// A stale entry costs at most one extra hop: the node it names no longer
// serves the AOR, looks it up itself and forwards or answers 404; a node
// that cannot be reached drops the entry and the request is routed again
// with a fresh lookup. Negative answers are never cached.
func WithLookupCache(ttl time.Duration) Option {
	return func(c *config) error { c.lookupTTL = ttl; return nil }
}

type cachedBinding struct {
	peer  peer.ID
	addrs []ma.Multiaddr
	until time.Time
}

// bindingCache caches the positive results of Locator.Lookup by AOR.
type bindingCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]cachedBinding
}

func newBindingCache(ttl time.Duration) *bindingCache {
	return &bindingCache{ttl: ttl, m: map[string]cachedBinding{}}
}

func (c *bindingCache) get(aor string, now time.Time) (cachedBinding, bool) {
	if c.ttl <= 0 {
		return cachedBinding{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[aor]
	if ok && !now.Before(e.until) {
		delete(c.m, aor)
		ok = false
	}
	return e, ok
}

// put caches b until the TTL passes or the binding expires, whichever is first.
func (c *bindingCache) put(aor string, b *domains.Binding, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	until := now.Add(c.ttl)
	if b.Expires.Before(until) {
		until = b.Expires
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedBindings {
		clear(c.m)
	}
	c.m[aor] = cachedBinding{peer: b.Peer, addrs: b.Addrs, until: until}
}

func (c *bindingCache) forget(aor string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, aor)
}
