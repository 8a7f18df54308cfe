package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ProtocolID is the libp2p protocol that carries RTP and RTCP between the two end nodes of
// a call.
const ProtocolID = protocol.ID("/hiersip/media/1.0.0")

// Defaults.
const (
	DefaultPortMin            = 10000
	DefaultPortMax            = 20000
	DefaultMaxSessions        = 1000
	DefaultMaxSessionsPerPeer = 200
	DefaultIdleTimeout        = time.Minute
	DefaultHoldTimeout        = time.Hour
	DefaultMaxDelay           = 100 * time.Millisecond
	// DefaultQueueBytes bounds the frames waiting for one peer's stream.
	DefaultQueueBytes = 1 << 20
)

const (
	dialTimeout       = 5 * time.Second
	writeTimeout      = 2 * time.Second
	migrateEvery      = 250 * time.Millisecond // how often a link on a relayed connection looks for a direct one
	janitorEvery      = time.Second
	linkLinger        = 10 * time.Second // a link without sessions is closed after this
	maxInboundPerPeer = 8                // concurrent media streams a peer may open to us
	controlAgeFactor  = 10               // RTCP may wait this many times MaxDelay
	reopenBackoff     = 200 * time.Millisecond
)

// Errors.
var (
	ErrClosed        = fmt.Errorf("media: relay closed: %w", net.ErrClosed)
	ErrSessionClosed = fmt.Errorf("media: session closed: %w", net.ErrClosed)
	ErrFull          = errors.New("media: session limit reached")
	ErrPeerFull      = errors.New("media: session limit for the peer reached")
	ErrNoPorts       = errors.New("media: no free port pair in the range")
	ErrBadOption     = errors.New("media: invalid option")
	ErrNoHost        = errors.New("media: nil host")
	ErrRemoteChanged = errors.New("media: the session's remote node is already set")
)

type config struct {
	log              *slog.Logger
	portMin, portMax int
	maxSessions      int
	maxPerPeer       int
	idle, hold       time.Duration
	maxDelay         time.Duration
	queueBytes       int
	addr             netip.Addr
	clock            clock.Clock      // idle and hold timeouts, link linger, session times
	stamp            func() time.Time // the enqueue time of a packet: its age is real time
}

// Option configures a Relay.
type Option func(*config) error

// WithLogger sets the logger (default: none).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrBadOption)
		}
		c.log = l
		return nil
	}
}

// WithPorts sets the UDP port range of the phone-facing sockets (inclusive). Each session
// takes an even port for RTP and the next one for RTCP.
func WithPorts(min, max int) Option {
	return func(c *config) error { c.portMin, c.portMax = min, max; return nil }
}

// WithMaxSessions bounds the sessions of the relay.
func WithMaxSessions(n int) Option { return func(c *config) error { c.maxSessions = n; return nil } }

// WithMaxSessionsPerPeer bounds the sessions whose remote node is one peer, when that peer
// opened them (an offer from the other node; see Relay.Open).
func WithMaxSessionsPerPeer(n int) Option {
	return func(c *config) error { c.maxPerPeer = n; return nil }
}

// WithTimeouts sets how long a session may carry no packet before it is closed: idle for
// active sessions, hold for sessions on hold (Session.SetHold).
func WithTimeouts(idle, hold time.Duration) Option {
	return func(c *config) error { c.idle, c.hold = idle, hold; return nil }
}

// WithMaxDelay bounds the time an RTP packet may wait in the queue to the other node;
// older packets are dropped (DropStale), oldest first. RTCP may wait ten times as long.
func WithMaxDelay(d time.Duration) Option {
	return func(c *config) error { c.maxDelay = d; return nil }
}

// WithQueueBytes bounds the bytes waiting for one peer's stream; beyond it the oldest
// audio is dropped (DropQueueFull).
func WithQueueBytes(n int) Option { return func(c *config) error { c.queueBytes = n; return nil } }

// WithAddress sets the IP the phone-facing sockets bind to (default 0.0.0.0). It is also
// the address advertised to phones, unless unspecified.
func WithAddress(ip netip.Addr) Option {
	return func(c *config) error {
		if !ip.IsValid() {
			return fmt.Errorf("%w: invalid address", ErrBadOption)
		}
		c.addr = ip.Unmap()
		return nil
	}
}

// WithClock sets the clock of the relay's timers and times (default the system
// clock): the idle and hold timeouts of sessions, the linger of unused links and the
// times sessions report. A packet's age (WithMaxDelay) and network deadlines stay on
// the system clock: the network runs in real time.
func WithClock(clk clock.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return fmt.Errorf("%w: nil clock", ErrBadOption)
		}
		c.clock = clk
		return nil
	}
}

func (c *config) validate() error {
	switch {
	case c.portMin < 1 || c.portMax > 65535 || c.portMax < c.portMin:
		return fmt.Errorf("%w: port range %d-%d (want 1 <= min <= max <= 65535)", ErrBadOption, c.portMin, c.portMax)
	case newPortPool(c.portMin, c.portMax).pairs() < 1:
		return fmt.Errorf("%w: port range %d-%d holds no even/odd pair", ErrBadOption, c.portMin, c.portMax)
	case c.maxSessions < 1:
		return fmt.Errorf("%w: max sessions %d", ErrBadOption, c.maxSessions)
	case c.maxPerPeer < 1:
		return fmt.Errorf("%w: max sessions per peer %d", ErrBadOption, c.maxPerPeer)
	case c.idle <= 0 || c.hold <= 0:
		return fmt.Errorf("%w: timeouts must be positive", ErrBadOption)
	case c.maxDelay <= 0:
		return fmt.Errorf("%w: max delay must be positive", ErrBadOption)
	case c.queueBytes < 64<<10:
		return fmt.Errorf("%w: queue of %d bytes < 64 KiB", ErrBadOption, c.queueBytes)
	}
	return nil
}

// Relay is a node's media relay: the phone-facing UDP sockets of its sessions and the
// libp2p streams to the other end nodes of its calls.
type Relay struct {
	h     host.Host
	cfg   config
	log   *slog.Logger
	self  peer.ID
	stats counters

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.RWMutex
	closed   bool
	sessions map[SessionID]*Session
	byKey    map[Key]*Session
	perPeer  map[peer.ID]int // sessions per remote node
	links    map[peer.ID]*link
	inbound  map[network.Stream]peer.ID
	inPeer   map[peer.ID]int
	ports    *portPool
}

// New creates a relay on h and registers the ProtocolID stream handler; Close removes it.
// h stays the caller's.
func New(h host.Host, opts ...Option) (r *Relay, err error) {
	if h == nil {
		return nil, ErrNoHost
	}
	cfg := config{
		log: slog.New(slog.DiscardHandler), portMin: DefaultPortMin, portMax: DefaultPortMax,
		maxSessions: DefaultMaxSessions, maxPerPeer: DefaultMaxSessionsPerPeer,
		idle: DefaultIdleTimeout, hold: DefaultHoldTimeout, maxDelay: DefaultMaxDelay,
		queueBytes: DefaultQueueBytes, addr: netip.IPv4Unspecified(), clock: clock.New(), stamp: time.Now,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r = &Relay{
		h: h, cfg: cfg, self: h.ID(),
		log:      cfg.log.With("component", "media"),
		sessions: map[SessionID]*Session{}, byKey: map[Key]*Session{}, perPeer: map[peer.ID]int{},
		links: map[peer.ID]*link{}, inbound: map[network.Stream]peer.ID{}, inPeer: map[peer.ID]int{},
		ports: newPortPool(cfg.portMin, cfg.portMax),
	}
	r.stats.init()
	r.ctx, r.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(ProtocolID, r.handleStream)
	r.spawn(r.janitor)
	return r, nil
}

// Close closes every session and stream and waits for the relay's goroutines. A second
// Close returns an error wrapping net.ErrClosed.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	sessions := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		sessions = append(sessions, s)
	}
	streams := make([]network.Stream, 0, len(r.inbound))
	for s := range r.inbound {
		streams = append(streams, s)
	}
	r.mu.Unlock()
	r.h.RemoveStreamHandler(ProtocolID)
	r.cancel()
	for _, s := range sessions {
		s.Close()
	}
	for _, s := range streams {
		_ = s.Reset()
	}
	r.wg.Wait()
	return nil
}

// spawn runs f in a goroutine owned by the relay; false (f not run) once closing.
func (r *Relay) spawn(f func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); f() }()
	return true
}

// Key identifies a session: the call's Call-ID and the index of its m-line in the SDP.
type Key struct {
	CallID string
	Index  int
}

// Open returns the session of key, opening it (a port pair) when there is none. remote,
// when not empty, is the other end node and counts against WithMaxSessionsPerPeer: pass it
// when that node's offer opens the session (a peer may then hold only so many), leave it
// empty when the local phone's offer does and set it later with Session.SetRemote. It
// fails with ErrFull, ErrPeerFull or ErrNoPorts.
func (r *Relay) Open(key Key, remote peer.ID) (*Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if s := r.byKey[key]; s != nil {
		if remote != "" {
			if err := r.setRemoteLocked(s, remote); err != nil {
				return nil, err
			}
		}
		return s, nil
	}
	id := SessionIDOf(key.CallID, key.Index)
	switch {
	case len(r.sessions) >= r.cfg.maxSessions:
		r.stats.refused.Add(1)
		return nil, ErrFull
	case remote != "" && r.perPeer[remote] >= r.cfg.maxPerPeer:
		r.stats.refused.Add(1)
		return nil, ErrPeerFull
	case r.sessions[id] != nil:
		return nil, fmt.Errorf("media: session ID %s of %q/%d collides with another call", id, key.CallID, key.Index)
	}
	rtp, rtcp, err := r.ports.open(r.cfg.addr)
	if err != nil {
		r.stats.refused.Add(1)
		return nil, err
	}
	s := newSession(r, key, id, rtp, rtcp)
	r.sessions[id] = s
	r.byKey[key] = s
	if remote != "" {
		_ = r.setRemoteLocked(s, remote)
	}
	r.stats.opened.Add(1)
	for c := range 2 {
		conn, comp := s.conns[c], c
		r.wg.Add(1)
		go func() { defer r.wg.Done(); s.readPhone(conn, comp) }()
	}
	r.log.Debug("session opened", "call", key.CallID, "m", key.Index, "rtp", s.ports[0], "remote", remote)
	return s, nil
}

// setRemoteLocked sets the remote node of s and gives it the link to that node.
func (r *Relay) setRemoteLocked(s *Session, p peer.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSessionClosed
	}
	if s.remote == p {
		return nil
	}
	if s.remote != "" {
		return ErrRemoteChanged
	}
	if p == r.self {
		return fmt.Errorf("media: a session's remote node cannot be this node")
	}
	l := r.links[p]
	if l == nil {
		l = newLink(r, p)
		r.links[p] = l
		r.wg.Add(1)
		go func() { defer r.wg.Done(); l.run() }()
	}
	s.remote, s.link = p, l
	r.perPeer[p]++
	return nil
}

// remove forgets s (already closed) and frees its ports.
func (r *Relay) remove(s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.id] == s {
		delete(r.sessions, s.id)
		delete(r.byKey, s.key)
		r.ports.release(s.ports[0])
		if s.remote != "" {
			if r.perPeer[s.remote]--; r.perPeer[s.remote] <= 0 {
				delete(r.perPeer, s.remote)
			}
		}
	}
}

// session returns the session with id.
func (r *Relay) session(id SessionID) *Session {
	r.mu.RLock()
	s := r.sessions[id]
	r.mu.RUnlock()
	return s
}

// Get returns the session of key, or nil.
func (r *Relay) Get(key Key) *Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byKey[key]
}

// Addr is the address the phone-facing sockets bind to (unspecified: every address).
func (r *Relay) Addr() netip.Addr { return r.cfg.addr }

// Advertise is the address to give a phone at phone in SDP: the relay's address, or, when
// it listens on every address, the local address the system would send to phone from.
func (r *Relay) Advertise(phone netip.Addr) netip.Addr {
	if !r.cfg.addr.IsUnspecified() {
		return r.cfg.addr
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(phone, 9)))
	if err != nil {
		return r.cfg.addr
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

// janitor closes idle sessions and the links no session uses any more.
func (r *Relay) janitor() {
	t := r.cfg.clock.Ticker(janitorEvery)
	defer t.Stop()
	idleLinks := map[peer.ID]time.Time{}
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		now := r.cfg.clock.Now()
		var idle []*Session
		r.mu.Lock()
		for _, s := range r.sessions {
			limit := r.cfg.idle
			if s.hold.Load() {
				limit = r.cfg.hold
			}
			if now.Sub(time.Unix(0, s.active.Load())) > limit {
				idle = append(idle, s)
			}
		}
		for p, l := range r.links {
			if r.perPeer[p] > 0 {
				delete(idleLinks, p)
				continue
			}
			if since, ok := idleLinks[p]; !ok {
				idleLinks[p] = now
			} else if now.Sub(since) > linkLinger {
				delete(r.links, p)
				delete(idleLinks, p)
				l.stop()
			}
		}
		r.mu.Unlock()
		for _, s := range idle {
			r.log.Debug("session idle, closing", "call", s.key.CallID, "m", s.key.Index)
			r.stats.idleClosed.Add(1)
			s.Close()
		}
	}
}
