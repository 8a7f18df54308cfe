package sipbridge

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/hiersip/hiersip/domains"
)

// Limits bounds the load one source can put on a bridge: a user agent's source IP address
// on the UA-facing listeners (an IPv6 source counts per /64), or a node's peer ID on
// ProtocolID. Each source has token buckets of its own, so a flooder empties only its own
// buckets: the requests of other sources, and the ACKs and in-dialog requests of their
// established calls, go on being served.
//
// A rate of 0 turns that limit off; the zero Limits turns all rate limits off (bounds on
// concurrent transactions stay).
type Limits struct {
	// SourceRate and SourceBurst bound the initial (out-of-dialog) requests of one UA source
	// IP per second. Excess requests are answered 503 with Retry-After.
	SourceRate  float64
	SourceBurst int
	// PeerRate and PeerBurst do the same for one peer over ProtocolID. A domain's proxy
	// forwards for many callers: give peers more room than single user agents.
	PeerRate  float64
	PeerBurst int
	// ACKs, CANCELs, in-dialog requests (with a To tag) and responses draw on a second bucket
	// per source, DialogFactor times as large as the first (default 4): a source that floods
	// INVITEs still gets its established calls' ACKs and BYEs through.
	DialogFactor float64
	// AuthFailures wrong digest credentials per AuthWindow are checked per source IP; beyond
	// that, requests with credentials get 503 with Retry-After without being checked, so
	// that passwords cannot be guessed faster (0: no throttle).
	AuthFailures int
	AuthWindow   time.Duration
	// MaxSourceTx bounds the concurrent server transactions of one UA source IP, MaxUATx
	// those of all UA sources together (503 beyond). Peers are bounded by
	// WithMaxTransactionsPerPeer.
	MaxSourceTx int
	MaxUATx     int
	// MaxSources bounds the sources tracked at once (per kind); idle sources are forgotten
	// first.
	MaxSources int
}

// DefaultLimits are the limits of a bridge without WithLimits. A softphone sends a request
// a second at its busiest; 200 initial requests per second from one address leave room for
// an office behind one NAT. Load generators (sipp benchmarks) need more: raise or disable
// the limits for them.
func DefaultLimits() Limits {
	return Limits{
		SourceRate: 200, SourceBurst: 400,
		PeerRate: 1000, PeerBurst: 2000,
		DialogFactor: 4,
		AuthFailures: 10, AuthWindow: time.Minute,
		MaxSourceTx: 1024, MaxUATx: 16384,
		MaxSources: 10000,
	}
}

// Validate reports an inconsistent Limits (wrapping ErrBadOption).
func (l Limits) Validate() error {
	switch {
	case l.SourceRate < 0 || l.PeerRate < 0 || l.DialogFactor < 0 || l.AuthFailures < 0 || l.AuthWindow < 0 || l.MaxSources < 0:
		return fmt.Errorf("%w: negative limit", ErrBadOption)
	case l.SourceRate > 0 && l.SourceBurst < 1, l.PeerRate > 0 && l.PeerBurst < 1:
		return fmt.Errorf("%w: a rate limit needs a burst of at least 1", ErrBadOption)
	case l.AuthFailures > 0 && l.AuthWindow == 0:
		return fmt.Errorf("%w: auth failure limit needs a window", ErrBadOption)
	case l.MaxSourceTx < 1 || l.MaxUATx < 1:
		return fmt.Errorf("%w: transaction bounds must be positive", ErrBadOption)
	}
	return nil
}

// WithLimits sets the rate limits and transaction bounds (see Limits and DefaultLimits).
// A zero DialogFactor or MaxSources takes the default.
func WithLimits(l Limits) Option {
	return func(c *config) error {
		if err := l.Validate(); err != nil {
			return err
		}
		def := DefaultLimits()
		if l.DialogFactor == 0 {
			l.DialogFactor = def.DialogFactor
		}
		if l.MaxSources == 0 {
			l.MaxSources = def.MaxSources
		}
		c.limits = l
		return nil
	}
}

// Stats counts what the bridge's limits refused.
type Stats struct {
	// RateLimited: requests answered 503 because their source was over its rate.
	RateLimited uint64
	// Overloaded: requests answered 503 because of a bound on concurrent transactions.
	Overloaded uint64
	// Dropped: messages dropped without an answer (over the rate and the answer budget).
	Dropped uint64
	// AuthChecked: digest credentials verified; AuthFailed of them wrong.
	AuthChecked, AuthFailed uint64
	// AuthThrottled: requests with credentials refused unchecked (503), the source being
	// over its failure budget.
	AuthThrottled uint64
	// Abuse counts the other refusals and the connections and streams (see AbuseStats).
	AbuseStats
}

// Stats returns the counters of the bridge's limits.
func (b *Bridge) Stats() Stats {
	s := &b.lim.stats
	return Stats{
		RateLimited: s.rateLimited.Load(), Overloaded: s.overloaded.Load(), Dropped: s.dropped.Load(),
		AuthChecked: s.authChecked.Load(), AuthFailed: s.authFailed.Load(), AuthThrottled: s.authThrottled.Load(),
		AbuseStats: b.abuseStats(),
	}
}

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
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func udpSourceKey(a net.Addr) string {
	if u, ok := a.(*net.UDPAddr); ok {
		if ip, ok := netip.AddrFromSlice(u.IP); ok {
			return sourceKey(netip.AddrPortFrom(ip, 0).String())
		}
	}
	return sourceKey(a.String())
}

func peerKey(p peer.ID) string { return string(p) }

// classify tells which bucket a request draws on.
func classify(req *sip.Request) class {
	if req.IsAck() || req.IsCancel() || hasTag(req.To()) {
		return classDialog
	}
	return classInitial
}

// overloadResponse is the 503 of back-pressure.
func (b *Bridge) overloadResponse(req *sip.Request, why string) *sip.Response {
	res := b.newResponse(req, 503, "Service Unavailable: "+why)
	res.AppendHeader(sip.NewHeader("Retry-After", retryAfter))
	return res
}

// admitDatagram screens a datagram from a UA before anything else parses it; false means
// it was answered 503 or dropped. It runs in the UDP reader.
func (b *Bridge) admitDatagram(data []byte, addr net.Addr, conn net.PacketConn) bool {
	l := b.lim
	if l.ua.rate <= 0 {
		return true
	}
	key, now := udpSourceKey(addr), time.Now()
	if !l.ua.rawAllow(key, now) {
		l.stats.dropped.Add(1)
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return true // keep-alive
	}
	if bytes.HasPrefix(data, []byte("SIP/")) {
		if l.ua.allow(key, classDialog, now) == admit {
			return true
		}
		l.stats.dropped.Add(1)
		return false
	}
	msg, err := sip.ParseMessage(data)
	if err != nil {
		return true // sipgo drops it; the raw bucket bounds the cost
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return true
	}
	switch l.ua.allow(key, classify(req), now) {
	case admit:
		return true
	case reject:
		l.stats.rateLimited.Add(1)
		if !req.IsAck() && req.Via() != nil {
			if _, err := conn.WriteTo([]byte(b.overloadResponse(req, "rate limit").String()), addr); err != nil {
				b.log.Debug("answering rate-limited request failed", "err", err)
			}
		}
	default:
		l.stats.dropped.Add(1)
	}
	return false
}

// admitPeerFrame screens a frame from peer p before it is parsed.
func (b *Bridge) admitPeerFrame(p peer.ID) bool {
	if b.lim.peers.rawAllow(peerKey(p), time.Now()) {
		return true
	}
	b.lim.stats.dropped.Add(1)
	return false
}

// admitPeer decides about a parsed request from peer p; false: it was answered 503 or dropped.
func (b *Bridge) admitPeer(p peer.ID, req *sip.Request) bool {
	l := b.lim
	switch l.peers.allow(peerKey(p), classify(req), time.Now()) {
	case admit:
		return true
	case reject:
		l.stats.rateLimited.Add(1)
		if !req.IsAck() {
			if err := b.links.send(b.ctx, p, nil, b.overloadResponse(req, "rate limit")); err != nil {
				b.log.Debug("answering rate-limited request failed", "peer", p, "err", err)
			}
		}
	default:
		l.stats.dropped.Add(1)
	}
	return false
}

// guardUA wraps a handler of requests from UAs with the checks that need sipgo's parse:
// the rate limits of non-UDP transports (UDP is screened as datagrams arrive), the bounds on
// concurrent transactions and, with WithUsers, digest authentication of out-of-dialog
// requests. A refused request still fills its arrival place in its dialog's queue.
func (b *Bridge) guardUA(next func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		l := b.lim
		key, now := sourceKey(req.Source()), time.Now()
		refuse := func(res *sip.Response) {
			if req.Method != sip.REGISTER && !req.IsCancel() {
				if callID, id, ok := arrivalKey(req); ok {
					b.queue.run(callID, id, func() {})
				}
			}
			if res == nil || tx == nil || req.IsAck() {
				return
			}
			res.SetDestination(req.Source())
			if err := tx.Respond(res); err != nil {
				b.log.Debug("refusing request failed", "err", err)
			}
		}
		if !isUDP(req) {
			switch l.ua.allow(key, classify(req), now) {
			case reject:
				l.stats.rateLimited.Add(1)
				refuse(b.overloadResponse(req, "rate limit"))
				return
			case drop:
				l.stats.dropped.Add(1)
				refuse(nil)
				return
			}
		}
		if res := b.refuseUntrusted(req); res != nil { // relaypolicy.go
			refuse(res)
			return
		}
		if req.IsAck() || tx == nil {
			next(req, tx)
			return
		}
		if !l.ua.enter(key, l.cfg.MaxSourceTx, &l.uaTx, l.cfg.MaxUATx, now) {
			l.stats.overloaded.Add(1)
			refuse(b.overloadResponse(req, "too many transactions"))
			return
		}
		defer l.ua.leave(key, &l.uaTx)
		if b.cfg.users != nil && req.Method != sip.REGISTER && classify(req) == classInitial {
			if res := b.authorizeUA(req, key); res != nil {
				refuse(res)
				return
			}
		}
		next(req, tx)
	}
}

func isUDP(req *sip.Request) bool {
	t := req.Transport()
	return t == "" || t == "UDP" || t == "udp"
}

// authorizeUA checks the digest credentials of an out-of-dialog request from a local UA
// against its From user; nil when accepted, else the response to send. Known and unknown
// users get the same answers (401 with a fresh nonce without credentials, 403 with wrong
// ones), so that they cannot be told apart.
func (b *Bridge) authorizeUA(req *sip.Request, key string) *sip.Response {
	var aor domains.AOR
	if f := req.From(); f != nil {
		if a, err := domains.AORFromURI(&f.Address); err == nil {
			aor = a
		}
	}
	code, reason, chal := b.authorize(req, aor, key)
	if code == 0 && !aor.InDomain(b.domain) {
		code, reason = 403, "Forbidden"
	}
	if code == 0 {
		return nil
	}
	res := b.newResponse(req, code, reason)
	for _, h := range challengeHeaders(chal) { // digest.go
		res.AppendHeader(h)
	}
	if code == 503 {
		res.AppendHeader(sip.NewHeader("Retry-After", retryAfter))
	}
	return res
}
