package sipdns

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// cacheKey names one DNS question.
type cacheKey struct {
	name  string // lower-case, fully qualified
	qtype uint16
}

// answer is what the DNS said to one question: records, or that the name
// does not exist (nx), or that it has no records of the type (no records,
// nx false).
type answer struct {
	rrs []dns.RR
	nx  bool
}

type cacheEntry struct {
	key     cacheKey
	ans     answer
	expires time.Time
}

// cache is a bounded LRU map of answers, each kept until its TTL runs out.
type cache struct {
	mu      sync.Mutex
	max     int
	ll      *list.List // front: most recently used
	items   map[cacheKey]*list.Element
	hits    uint64
	misses  uint64
	evicted uint64
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), items: map[cacheKey]*list.Element{}}
}

func (c *cache) get(k cacheKey, now time.Time) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		c.misses++
		return answer{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, k)
		c.misses++
		return answer{}, false
	}
	c.ll.MoveToFront(el)
	c.hits++
	return e.ans, true
}

func (c *cache) put(k cacheKey, a answer, expires time.Time) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		e := el.Value.(*cacheEntry)
		e.ans, e.expires = a, expires
		c.ll.MoveToFront(el)
		return
	}
	c.items[k] = c.ll.PushFront(&cacheEntry{key: k, ans: a, expires: expires})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
		c.evicted++
	}
}

func (c *cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ll.Init()
	clear(c.items)
}

func (c *cache) stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Entries: c.ll.Len(), Hits: c.hits, Misses: c.misses, Evicted: c.evicted}
}

// CacheStats counts the resolver cache's use since it was made.
type CacheStats struct {
	Entries int    // answers held now
	Hits    uint64 // questions answered from the cache
	Misses  uint64 // questions sent to the DNS server (absent or expired)
	Evicted uint64 // answers dropped because the cache was full
}
