package sipbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/push"
	"github.com/hiersip/hiersip/sipdns"
)

// ProtocolID is the libp2p protocol that carries SIP between nodes.
const ProtocolID = protocol.ID("/hiersip/sip/1.0.0")

// Defaults.
const (
	DefaultListenAddr          = "127.0.0.1:5060"
	DefaultMaxMessageSize      = 64 << 10
	DefaultMaxTxPerPeer        = 1024
	DefaultMinExpires          = 60 * time.Second
	DefaultMaxExpires          = time.Hour
	DefaultExpires             = time.Hour
	DefaultLocatorTimeout      = 10 * time.Second
	DefaultDialTimeout         = 5 * time.Second
	inviteTimeout              = 3 * time.Minute // RFC 3261 Timer C
	nonInviteTimeout           = 32 * time.Second
	cancelGrace                = 32 * time.Second
	nodeParam                  = "hsn" // URI/Via parameter carrying a node's peer ID
	retryAfter                 = "5"   // seconds, in 503 answers
	overlayTransport           = "P2P"
	branchMagic                = "z9hG4bK"
	headerNodeID, headerOvlyID = "Node-ID", "Overlay-ID"
)

// Errors.
var (
	// ErrUnavailable, wrapped by a ProxyResolver's error, means no next hop
	// is reachable now: the bridge answers 503 with Retry-After.
	ErrUnavailable  = errors.New("sipbridge: route unavailable")
	ErrNoHost       = errors.New("sipbridge: nil host")
	ErrNoLocator    = errors.New("sipbridge: nil locator")
	ErrBadOption    = errors.New("sipbridge: invalid option")
	ErrClosed       = fmt.Errorf("sipbridge: bridge closed: %w", net.ErrClosed)
	ErrLinkDown     = errors.New("sipbridge: link to node failed")
	ErrTooLarge     = errors.New("sipbridge: message too large")
	ErrFraming      = errors.New("sipbridge: bad stream framing")
	ErrNoRoute      = errors.New("sipbridge: no route to domain")
	ErrTxTimeout    = errors.New("sipbridge: transaction timed out")
	ErrTooManyTx    = errors.New("sipbridge: too many transactions from peer")
	ErrUnauthorized = errors.New("sipbridge: unauthorized")
)

// Locator is the location service the bridge routes with; *node.Node implements it.
type Locator interface {
	// Domain is this node's domain, e.g. "pastry".
	Domain() string
	// Register stores or refreshes this node's binding for aor; empty contacts unregister (tombstone).
	Register(ctx context.Context, aor domains.AOR, contacts []domains.Contact) error
	// Lookup returns the binding of aor, or an error wrapping domains.ErrNotFound.
	Lookup(ctx context.Context, aor domains.AOR) (*domains.Binding, error)
}

// ProxyResolver gives the next-hop node for a target outside this node's domain
// (the domain's elected proxy, or the target domain's proxy when this node is a proxy).
// It returns an error wrapping domains.ErrNotFound when there is no route.
type ProxyResolver func(ctx context.Context, target domains.AOR) (peer.AddrInfo, error)

type config struct {
	udpAddr, tcpAddr string
	log              *slog.Logger
	interDomain      ProxyResolver
	maxMsg           int
	maxTxPerPeer     int
	minExp, maxExp   time.Duration
	defExp           time.Duration
	users            *Users
	locTimeout       time.Duration
	dialTimeout      time.Duration
	udpBuf           int
	lookupTTL        time.Duration
	mbox             MessageBox   // WithMessageBox (mailbox.go)
	push             *push.Waiter // WithPush (push.go)
	trace            func(TraceEvent)
	callObserver     func(kind string, code int)
	member           func(peer.ID) bool // nil: relay for any peer (WithMembership)
	limits           Limits
	advHost          string // WithAdvertise
	advPort          int
	natKeepalive     time.Duration
	regStore         string       // WithRegistrationStore
	media            *media.Relay // WithMedia (media.go)
	conns            ConnLimits
	trusted          []netip.Prefix // UA networks served without users (relaypolicy.go)
	digestAlgs       []string       // nil: MD5 (SHA-256 when a user has no MD5 HA1; digest.go)
	maxContacts      int            // 0: DefaultMaxContacts (contactcap.go)
	clock            clock.Clock    // WithClock (clock.go)
	// transport_tls.go: TLS, WS and WSS listeners for UAs
	tlsAddr, wsAddr, wssAddr    string
	tlsConf, wssConf, tlsClient *tls.Config
	outbound                    *sipdns.Resolver // outbound.go
	outboundTry                 time.Duration
	publicAddr, publicTCP       string // public.go
	publicTLS                   string
	publicTLSConf               *tls.Config
}

// Option configures a Bridge.
type Option func(*config) error

// WithUDP sets the UA-facing UDP listen address ("" disables UDP). Port 0 picks a free port.
func WithUDP(addr string) Option { return func(c *config) error { c.udpAddr = addr; return nil } }

// WithTCP sets the UA-facing TCP listen address ("" disables TCP). Port 0 picks a free port.
func WithTCP(addr string) Option { return func(c *config) error { c.tcpAddr = addr; return nil } }

// WithListen sets both the UDP and the TCP listen address.
func WithListen(addr string) Option {
	return func(c *config) error { c.udpAddr, c.tcpAddr = addr, addr; return nil }
}

// WithLogger sets the logger (default: discard). The bridge adds the key "component"; a
// node passes a logger that names the node and its domain.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrBadOption)
		}
		c.log = l
		return nil
	}
}

// WithInterDomain sets the hook that resolves targets outside this node's domain.
// Without it such requests are answered 404.
func WithInterDomain(r ProxyResolver) Option {
	return func(c *config) error { c.interDomain = r; return nil }
}

// WithMaxMessageSize bounds a SIP message received over libp2p (bytes).
func WithMaxMessageSize(n int) Option { return func(c *config) error { c.maxMsg = n; return nil } }

// WithMaxTransactionsPerPeer bounds the concurrent server transactions one peer may open.
func WithMaxTransactionsPerPeer(n int) Option {
	return func(c *config) error { c.maxTxPerPeer = n; return nil }
}

// WithExpires sets the registration interval bounds and the default used when a REGISTER names none.
func WithExpires(min, def, max time.Duration) Option {
	return func(c *config) error { c.minExp, c.defExp, c.maxExp = min, def, max; return nil }
}

// WithUsers enables digest authentication of REGISTER (and of requests from local UAs).
func WithUsers(u *Users) Option { return func(c *config) error { c.users = u; return nil } }

// WithLocatorTimeout bounds each Locator call.
func WithLocatorTimeout(d time.Duration) Option {
	return func(c *config) error { c.locTimeout = d; return nil }
}

// WithDialTimeout bounds opening a stream to another node.
func WithDialTimeout(d time.Duration) Option {
	return func(c *config) error { c.dialTimeout = d; return nil }
}

// WithUDPBuffer sets the UDP socket receive and send buffer size in bytes (0 keeps the OS default).
func WithUDPBuffer(n int) Option { return func(c *config) error { c.udpBuf = n; return nil } }

func (c *config) validate() error {
	switch {
	case c.udpAddr == "" && c.tcpAddr == "" && c.tlsAddr == "" && c.wsAddr == "" && c.wssAddr == "":
		return fmt.Errorf("%w: no UDP, TCP, TLS, WS or WSS listen address", ErrBadOption)
	case c.maxMsg < 1024:
		return fmt.Errorf("%w: max message size %d < 1024", ErrBadOption, c.maxMsg)
	case c.maxTxPerPeer < 1:
		return fmt.Errorf("%w: max transactions per peer %d", ErrBadOption, c.maxTxPerPeer)
	case c.minExp <= 0 || c.defExp < c.minExp || c.maxExp < c.defExp:
		return fmt.Errorf("%w: expires bounds need 0 < min <= default <= max", ErrBadOption)
	case c.locTimeout <= 0 || c.dialTimeout <= 0:
		return fmt.Errorf("%w: timeouts must be positive", ErrBadOption)
	}
	return nil
}

// Bridge is a node's SIP front end: registrar and outbound proxy for local user agents on
// UDP/TCP, and a transaction-stateful proxy between nodes over ProtocolID.
type Bridge struct {
	h       host.Host
	loc     Locator
	cfg     config
	log     *slog.Logger
	self    peer.ID
	selfStr string
	domain  string

	parser   *sip.Parser  // sipgo's: every message is parsed once, by its transport
	loopSeed maphash.Seed // of the loop keys in this node's branches (loop.go)
	chain    handler      // the admission chain (admission.go)

	udp     *udpTransport // nil when UDP is off
	tcp     *tcpTransport // nil when TCP is off
	tls     *tcpTransport // nil when TLS is off (transport_tls.go)
	ws, wss *tcpTransport // nil when WS, WSS are off (transport_ws.go)
	pub     *udpTransport // nil without a public address (public.go)
	pubTCP  *tcpTransport // nil without a public TCP address
	pubTLS  *tcpTransport // nil without a public TLS address
	pubShow string
	udpHost string // bound IP ("::" for a wildcard: Go binds one dual-stack socket)
	udpPort int
	tcpHost string
	tcpPort int
	udpShow string // the bound address as configured ("0.0.0.0:5060"), for UDPAddr and logs
	tcpShow string
	addrs   *addrBook

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeMu    sync.Mutex
	closed     bool
	handlerSet bool // the ProtocolID handler is ours to remove

	nodeHdrMu sync.Mutex
	nodeHdr   string
	nodeHdrAt time.Time
	nodesSeen recentValues // Hiersip-Node values learnt (nodeheaders.go)

	reg    *registrar
	links  *links
	txl    *txLayer     // transaction.go, txlayer.go
	order  *dialogOrder // order.go
	peerTx *counter     // server transactions per peer (admission.go)

	inflight atomic.Int64  // requests being proxied (relay running)
	detached chan struct{} // slots of the TCP writes readers hand off (sendDetached)
	uas      uaAddrs       // contact addresses of local UAs
	ext      uaAddrs       // addresses outside the overlay dialogs go to (outbound.go)

	lim        *limiter
	binds      *bindingCache
	devs       deviceCache    // device sets looked up (fork.go)
	delivering deliveries     // AORs whose waiting messages are being delivered (mailbox.go)
	pres       *presenceState // the presence agent (presence.go); nil without a DeviceLocator
	med        mediaCalls     // calls whose media the node anchors (media.go)
	calls      callTable      // the calls the node is in, for Calls (calls.go)
	guard      *logGuard      // the log guard under b.log (logguard.go)
	streams    *counter       // inbound streams per peer (conncap.go)
	unwatch    func()         // stops watching the host's connections (orphans.go)
	checks     peerChecks     // peers being checked after a failure (orphans.go)
	auth       *authGuard
}

// New creates a Bridge on h, binds its UA-facing listeners and starts serving.
// It registers the ProtocolID stream handler on h; Close removes it. h and loc stay the caller's.
// A failure (a busy port, say) returns an error naming its cause, after closing what New had
// opened; New never returns a Bridge with an error.
func New(h host.Host, loc Locator, opts ...Option) (_ *Bridge, err error) {
	if h == nil {
		return nil, ErrNoHost
	}
	if loc == nil {
		return nil, ErrNoLocator
	}
	cfg := config{
		udpAddr: DefaultListenAddr, tcpAddr: DefaultListenAddr,
		log: slog.New(slog.DiscardHandler), maxMsg: DefaultMaxMessageSize, maxTxPerPeer: DefaultMaxTxPerPeer,
		minExp: DefaultMinExpires, defExp: DefaultExpires, maxExp: DefaultMaxExpires,
		locTimeout: DefaultLocatorTimeout, dialTimeout: DefaultDialTimeout, udpBuf: 4 << 20,
		limits: DefaultLimits(), conns: DefaultConnLimits(),
		lookupTTL:    DefaultLookupCacheTTL,
		natKeepalive: DefaultNATKeepalive,
		clock:        clock.New(),
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := domains.ValidateDomain(loc.Domain()); err != nil {
		return nil, fmt.Errorf("%w: locator domain: %w", ErrBadOption, err)
	}
	b := &Bridge{h: h, loc: loc, cfg: cfg, self: h.ID(), selfStr: h.ID().String(), domain: loc.Domain()}
	// The component only: the node's logger carries the node and its domain (each key once).
	// Everything goes through the log guard (logguard.go): rate-limited, summarised.
	b.guard = newLogGuard(cfg.log.Handler().WithAttrs([]slog.Attr{slog.String("component", "sipbridge")}))
	b.log = slog.New(b.guard)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.parser = newParser()
	b.loopSeed = maphash.MakeSeed()
	b.txl = newTxLayer(b)
	b.lim = newLimiter(cfg.limits)
	b.auth = newAuthGuard(cfg.limits) // digest.go
	b.peerTx = newCounter(cfg.maxTxPerPeer, math.MaxInt)
	b.order = newDialogOrder(b.spawn, b.serveRequest)
	b.detached = make(chan struct{}, maxDetachedWrites)
	b.chain = b.admission()
	b.links = newLinks(b)
	b.reg = newRegistrar(b)
	b.uas.clock, b.ext.clock, b.med.clock = cfg.clock, cfg.clock, cfg.clock
	b.binds = newBindingCache(cfg.lookupTTL)
	b.devs.ttl = cfg.lookupTTL
	if _, ok := loc.(DeviceLocator); ok {
		if b.pres, err = newPresence(); err != nil {
			return nil, err
		}
		if n, ok := loc.(DeviceSetNotifier); ok {
			n.NotifyDeviceSets(b.deviceSetStored) // regpresence.go
		}
	}
	b.streams = newCounter(cfg.conns.MaxStreamsPerPeer, cfg.conns.MaxStreams)
	defer func() {
		if err != nil {
			// b is the half-built bridge (never the nil New returns): Close closes what New
			// had opened, as kad-dht's New and tailscale's closeOnErrorPool do.
			err = errors.Join(err, b.Close())
		}
	}()

	var udpA, tcpA net.Addr
	if cfg.udpAddr != "" {
		la, err := net.ResolveUDPAddr("udp", cfg.udpAddr)
		if err != nil {
			return nil, fmt.Errorf("sipbridge: listen udp: %w", err)
		}
		uc, err := net.ListenUDP("udp", la)
		if err != nil {
			return nil, fmt.Errorf("sipbridge: listen udp: %w", err)
		}
		if cfg.udpBuf > 0 {
			setSocketBuffers(uc, cfg.udpBuf) // sockbuf.go
		}
		b.udp = newUDPTransport(b, uc)
		a := uc.LocalAddr().(*net.UDPAddr)
		b.udpHost, b.udpPort = a.IP.String(), a.Port
		b.udpShow = shownAddr(cfg.udpAddr, a.IP, a.Port)
		udpA = a
	}
	if cfg.tcpAddr != "" {
		l, err := net.Listen("tcp", cfg.tcpAddr)
		if err != nil {
			return nil, fmt.Errorf("sipbridge: listen tcp: %w", err)
		}
		b.tcp = newTCPTransport(b, l)
		a := l.Addr().(*net.TCPAddr)
		b.tcpHost, b.tcpPort = a.IP.String(), a.Port
		b.tcpShow = shownAddr(cfg.tcpAddr, a.IP, a.Port)
		tcpA = a
	}
	b.addrs = newAddrBook(udpA, tcpA, cfg.advHost, cfg.advPort)
	if err := b.listenSecure(); err != nil { // transport_tls.go
		return nil, err
	}
	var restored []*aorEntry
	if cfg.regStore != "" {
		b.reg.store = newRegStore(cfg.regStore)
		restored = b.reg.load()
	}

	h.SetStreamHandler(ProtocolID, b.links.handleStream)
	b.handlerSet = true
	b.unwatch = b.watchPeers()
	if b.udp != nil {
		b.spawn(b.udp.serve)
	}
	if b.tcp != nil {
		b.spawn(b.tcp.serve)
	}
	b.serveSecure()
	b.spawn(func() { b.reg.run(b.ctx) })
	if b.pres != nil {
		b.spawn(b.runPresence) // presence.go
	}
	b.spawn(func() { b.runNATKeepalive(b.ctx) })
	if b.reg.store != nil {
		b.spawn(func() { b.reg.runStore(b.ctx) })
		if len(restored) > 0 {
			b.spawn(func() { b.reg.republish(b.ctx, restored) })
		}
	}
	b.spawn(b.flushLogs)
	b.log.Info("sip bridge started", b.addrAttrs()...)
	b.logPolicy()
	return b, nil
}

// Close stops the listeners, fails pending transactions and closes the streams.
// Registrations are not withdrawn: they lapse in the overlay at their expiry.
// A second Close returns an error wrapping net.ErrClosed.
func (b *Bridge) Close() error {
	b.closeMu.Lock()
	if b.closed {
		b.closeMu.Unlock()
		return ErrClosed
	}
	b.closed = true
	b.closeMu.Unlock()

	b.cancel()
	if b.handlerSet {
		b.h.RemoveStreamHandler(ProtocolID)
	}
	if b.unwatch != nil {
		b.unwatch()
	}
	var errs []error
	b.txl.close(ErrClosed) // the relays answer upstream while the transports are still open
	if b.udp != nil {
		_ = b.udp.close()
	}
	if b.tcp != nil {
		b.tcp.close()
	}
	b.closeSecure()
	b.links.closeAll()
	b.wg.Wait()
	b.txl.endAll(ErrClosed)
	if b.reg != nil {
		errs = append(errs, b.reg.flush())
	}
	return errors.Join(errs...)
}

// track registers one more goroutine with the bridge's lifecycle; false once closing, so
// that no goroutine starts after Close began waiting.
func (b *Bridge) track() bool {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	return true
}

// spawn runs f in a tracked goroutine; false (f not run) once closing.
func (b *Bridge) spawn(f func()) bool {
	if !b.track() {
		return false
	}
	go func() { defer b.wg.Done(); f() }()
	return true
}

// UDPAddr is the bound UA-facing UDP address ("" when disabled): a wildcard address as
// configured ("0.0.0.0:5060"), with the port bound.
func (b *Bridge) UDPAddr() string {
	if b.udp == nil {
		return ""
	}
	return b.udpShow
}

// TCPAddr is the bound UA-facing TCP address ("" when disabled), as UDPAddr.
func (b *Bridge) TCPAddr() string {
	if b.tcp == nil {
		return ""
	}
	return b.tcpShow
}

// Domain is the node's domain.
func (b *Bridge) Domain() string { return b.domain }

// PeerID is the node's libp2p identity.
func (b *Bridge) PeerID() peer.ID { return b.self }
