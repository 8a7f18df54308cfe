package sipbridge

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// Token buckets per source (the rate plugin of the admission chain and the transports'
// raw budgets), and the bounds on concurrent transactions (the bound plugin).

// class is what a message draws on.
type class int

const (
	classInitial class = iota // out-of-dialog request
	classDialog               // ACK, CANCEL, in-dialog request, response
)

// verdict of the admission of one message.
type verdict int

const (
	admit  verdict = iota
	reject         // answer 503 with Retry-After
	drop           // silently
)

// bucket is the state of one source.
type bucket struct {
	initial, dialog, answers *rate.Limiter // answers: the 503s this source may get
	raw                      *rate.Limiter // every datagram or frame, before parsing
	auth                     *rate.Limiter // digest failures
	inflight                 int
	last                     time.Time
}

// sourceTable holds the buckets of one kind of source (UA addresses, or peers), at most
// max of them.
type sourceTable struct {
	mu          sync.Mutex
	m           map[string]*bucket
	max         int
	rate        float64
	burst       int
	factor      float64
	authN       int
	authW       time.Duration
	idleHorizon time.Duration
}

func newSourceTable(r float64, burst int, l Limits) *sourceTable {
	t := &sourceTable{m: map[string]*bucket{}, max: l.MaxSources, rate: r, burst: burst, factor: l.DialogFactor,
		authN: l.AuthFailures, authW: l.AuthWindow}
	// After this long without traffic every bucket of a source is full again: forgetting it
	// changes nothing.
	t.idleHorizon = time.Second
	if r > 0 {
		t.idleHorizon = max(t.idleHorizon, time.Duration(float64(burst)/r*float64(time.Second))+time.Second)
	}
	if t.authN > 0 {
		t.idleHorizon = max(t.idleHorizon, t.authW)
	}
	return t
}

func (t *sourceTable) newBucket(now time.Time) *bucket {
	b := &bucket{last: now}
	if t.rate > 0 {
		lim := func(f float64) *rate.Limiter {
			return rate.NewLimiter(rate.Limit(t.rate*f), max(1, int(float64(t.burst)*f)))
		}
		b.initial, b.dialog, b.answers = lim(1), lim(t.factor), lim(1)
		b.raw = lim(1 + t.factor + 1)
	}
	if t.authN > 0 {
		b.auth = rate.NewLimiter(rate.Every(t.authW/time.Duration(t.authN)), t.authN)
	}
	return b
}

// get returns the bucket of key, creating it (and making room) when needed. t.mu is held.
func (t *sourceTable) getLocked(key string, now time.Time) *bucket {
	if b, ok := t.m[key]; ok {
		b.last = now
		return b
	}
	if len(t.m) >= t.max {
		t.evictLocked(now)
	}
	b := t.newBucket(now)
	t.m[key] = b
	return b
}

// evictLocked forgets idle sources, or, when none is idle (a flood from many addresses),
// an arbitrary eighth of them, which then start again with full buckets.
func (t *sourceTable) evictLocked(now time.Time) {
	for k, b := range t.m {
		if b.inflight == 0 && now.Sub(b.last) > t.idleHorizon {
			delete(t.m, k)
		}
	}
	n := t.max / 8
	for k, b := range t.m {
		if len(t.m) < t.max || n <= 0 {
			return
		}
		if b.inflight == 0 {
			delete(t.m, k)
			n--
		}
	}
}

// rawAllow admits one message of key before parsing: false drops it.
func (t *sourceTable) rawAllow(key string, now time.Time) bool {
	if t.rate <= 0 {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.getLocked(key, now).raw.AllowN(now, 1)
}

// allow decides about one parsed message of key.
func (t *sourceTable) allow(key string, c class, now time.Time) verdict {
	if t.rate <= 0 {
		return admit
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.getLocked(key, now)
	l := b.initial
	if c == classDialog {
		l = b.dialog
	}
	if l.AllowN(now, 1) {
		return admit
	}
	if b.answers.AllowN(now, 1) {
		return reject
	}
	return drop
}

// enter counts a server transaction of key; false when key or all sources together are at
// their bound. A true enter must be matched by leave.
func (t *sourceTable) enter(key string, perKey int, total *atomic.Int64, maxTotal int, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.getLocked(key, now)
	if b.inflight >= perKey {
		return false
	}
	if total.Add(1) > int64(maxTotal) {
		total.Add(-1)
		return false
	}
	b.inflight++
	return true
}

func (t *sourceTable) leave(key string, total *atomic.Int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	total.Add(-1)
	if b, ok := t.m[key]; ok && b.inflight > 0 {
		b.inflight--
	}
}

// authAllowed reports whether key may have credentials checked now.
func (t *sourceTable) authAllowed(key string, now time.Time) bool {
	if t.authN <= 0 {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.getLocked(key, now).auth.TokensAt(now) >= 1
}

// authFailed charges one failure to key.
func (t *sourceTable) authFailed(key string, now time.Time) {
	if t.authN <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.getLocked(key, now).auth.AllowN(now, 1)
}

func (t *sourceTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// limiter is a bridge's admission control.
type limiter struct {
	cfg   Limits
	ua    *sourceTable
	peers *sourceTable
	uaTx  atomic.Int64
	stats struct {
		rateLimited, overloaded, dropped       atomic.Uint64
		authChecked, authFailed, authThrottled atomic.Uint64
		abuseCounters
	}
}

func newLimiter(l Limits) *limiter {
	return &limiter{cfg: l, ua: newSourceTable(l.SourceRate, l.SourceBurst, l), peers: newSourceTable(l.PeerRate, l.PeerBurst, l)}
}

// sourceKey is the rate-limiting key of a UA address ("ip:port"): the IP, or the /64 of an
// IPv6 address.
func sourceKey(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	return addrKey(ip)
}

// addrKey is the rate-limiting key of a UA's IP address: the address, or its /64.
func addrKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func peerKey(p peer.ID) string { return string(p) }

// classify tells which bucket a request draws on.
func classify(req *sip.Request) class {
	if req.IsAck() || req.IsCancel() || hasTag(req.To()) {
		return classDialog
	}
	return classInitial
}
