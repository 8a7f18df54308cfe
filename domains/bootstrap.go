package domains

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/internal/p2pnet"
)

// Errors of the bootstrapper.
var (
	// ErrBootstrapConfig wraps every error of NewBootstrapper's validation;
	// the message names the offending BootstrapConfig field.
	ErrBootstrapConfig = errors.New("domains: invalid bootstrap config")
	// ErrBootstrapStarted is returned by a second Start.
	ErrBootstrapStarted = errors.New("domains: bootstrapper already started")
)

// Defaults of BootstrapConfig's zero values.
const (
	BootstrapDefaultMinBackoff    = time.Second
	BootstrapDefaultMaxBackoff    = time.Minute
	BootstrapDefaultDialTimeout   = 10 * time.Second
	BootstrapDefaultCacheInterval = time.Minute
	// bootstrapPollInterval is how often Joined is polled.
	bootstrapPollInterval = 100 * time.Millisecond
	// bootstrapDialParallelism bounds concurrent dials of one source.
	bootstrapDialParallelism = 8
)

// BootstrapSource names one of the four bootstrap methods of draft §4.1.
type BootstrapSource string

// The bootstrap sources. BootstrapSourceNone means "no connection yet".
const (
	BootstrapSourceNone   BootstrapSource = ""
	BootstrapSourceMDNS   BootstrapSource = "mdns"   // broadcast on the LAN
	BootstrapSourceStatic BootstrapSource = "static" // pre-configured addresses
	BootstrapSourceCache  BootstrapSource = "cache"  // addresses cached by a prior run
	BootstrapSourceWeb    BootstrapSource = "web"    // a web station
)

// BootstrapEventKind says what a BootstrapEvent reports.
type BootstrapEventKind int

// Kinds of bootstrap events.
const (
	// BootstrapFound: a source named a candidate peer (mDNS discovery, a
	// cache entry, a static address, a web-station entry).
	BootstrapFound BootstrapEventKind = iota + 1
	// BootstrapConnected: a connection to a candidate succeeded.
	BootstrapConnected
	// BootstrapFailed: a connection attempt to a candidate failed; Err says why.
	BootstrapFailed
	// BootstrapJoined: Joined reported true for the first time. Source is
	// the source of the first successful connection (none if joined by an
	// inbound connection only).
	BootstrapJoined
)

func (k BootstrapEventKind) String() string {
	switch k {
	case BootstrapFound:
		return "found"
	case BootstrapConnected:
		return "connected"
	case BootstrapFailed:
		return "failed"
	case BootstrapJoined:
		return "joined"
	}
	return fmt.Sprintf("BootstrapEventKind(%d)", int(k))
}

// BootstrapEvent is reported to BootstrapConfig.OnEvent, e.g. to count
// connections per source in metrics.
type BootstrapEvent struct {
	Kind   BootstrapEventKind
	Source BootstrapSource
	Peer   peer.ID // empty for BootstrapJoined
	Err    error   // for BootstrapFailed
}

// BootstrapConfig configures a Bootstrapper. Each of the four sources of
// draft §4.1 can be used alone or with the others. BootstrapDefaultConfig
// returns the usual starting point (mDNS on).
type BootstrapConfig struct {
	// Domain is the domain whose overlay the node joins, or GlobalName for
	// the global overlay; required.
	Domain string
	// MDNS enables discovery by multicast DNS on the LAN, with one service
	// name per domain (MDNSServiceName). The host's listen addresses are
	// advertised as they are at Start.
	MDNS bool
	// Static holds pre-configured addresses of persistent domain nodes:
	// /ip4/…/tcp/…/p2p/<id>. Each must name a peer.
	Static []ma.Multiaddr
	// CacheFile, when set, is a JSON file (see PeerCache) that holds the
	// addresses of domain peers seen recently, e.g.
	// <datadir>/peers-<domain>.json. It is read at Start, tried first, and
	// written a second after joining, every CacheInterval and at Close. Its
	// directory must exist.
	CacheFile string
	// WebURLs are web stations: http(s) URLs that return the domain's peers
	// in the format of WebStationHandler.
	WebURLs []string
	// Peers returns the current peers of the domain, to be cached. Nil
	// means the host's connected peers with their peerstore addresses.
	Peers func() []peer.AddrInfo
	// Joined reports whether the node has joined the domain overlay (its
	// routing table is non-empty). Nil means "the host has a connected peer".
	Joined func() bool
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// rounds of cache → static → web while the node is alone, and between
	// retries of an mDNS peer. Zero means the defaults (1 s, 1 min).
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds one connection attempt; zero means 10 s.
	DialTimeout time.Duration
	// CacheInterval is the period of cache saves; zero means 1 min.
	CacheInterval time.Duration
	// Logger receives warnings and debug messages; nil discards them.
	Logger *slog.Logger
	// HTTPClient fetches web stations; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// OnEvent, if set, is called for every BootstrapEvent, from several of
	// the bootstrapper's goroutines at once. It must not block.
	OnEvent func(BootstrapEvent)
}

// BootstrapDefaultConfig returns a config for domain with mDNS on and every
// other source off.
func BootstrapDefaultConfig(domain string) BootstrapConfig {
	return BootstrapConfig{Domain: domain, MDNS: true}
}

func bootstrapConfigError(field, format string, args ...any) error {
	return fmt.Errorf("%w: BootstrapConfig.%s: %s", ErrBootstrapConfig, field, fmt.Sprintf(format, args...))
}

// validate checks cfg against h and fills in defaults.
func (cfg *BootstrapConfig) validate(h host.Host) error {
	if h == nil {
		return fmt.Errorf("%w: nil host", ErrBootstrapConfig)
	}
	if cfg.Domain != GlobalName {
		if err := ValidateDomain(cfg.Domain); err != nil {
			return bootstrapConfigError("Domain", "%v", err)
		}
	}
	for i, a := range cfg.Static {
		if a == nil {
			return bootstrapConfigError(fmt.Sprintf("Static[%d]", i), "nil address")
		}
		info, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return bootstrapConfigError(fmt.Sprintf("Static[%d]", i), "%q: %v (want /ip4/…/tcp/…/p2p/<id>)", a, err)
		}
		if len(info.Addrs) == 0 {
			return bootstrapConfigError(fmt.Sprintf("Static[%d]", i), "%q has no transport address", a)
		}
	}
	if cfg.CacheFile != "" {
		st, err := os.Stat(filepath.Dir(cfg.CacheFile))
		if err != nil {
			return bootstrapConfigError("CacheFile", "%v", err)
		}
		if !st.IsDir() {
			return bootstrapConfigError("CacheFile", "%s is not a directory", filepath.Dir(cfg.CacheFile))
		}
		if st, err := os.Stat(cfg.CacheFile); err == nil && st.IsDir() {
			return bootstrapConfigError("CacheFile", "%s is a directory", cfg.CacheFile)
		}
	}
	for i, s := range cfg.WebURLs {
		u, err := url.Parse(s)
		if err != nil {
			return bootstrapConfigError(fmt.Sprintf("WebURLs[%d]", i), "%v", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return bootstrapConfigError(fmt.Sprintf("WebURLs[%d]", i), "%q: scheme must be http or https", s)
		}
		if u.Host == "" {
			return bootstrapConfigError(fmt.Sprintf("WebURLs[%d]", i), "%q has no host", s)
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"MinBackoff", &cfg.MinBackoff, BootstrapDefaultMinBackoff},
		{"MaxBackoff", &cfg.MaxBackoff, BootstrapDefaultMaxBackoff},
		{"DialTimeout", &cfg.DialTimeout, BootstrapDefaultDialTimeout},
		{"CacheInterval", &cfg.CacheInterval, BootstrapDefaultCacheInterval},
	} {
		if *d.v < 0 {
			return bootstrapConfigError(d.name, "negative duration %v", *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		return bootstrapConfigError("MaxBackoff", "%v is less than MinBackoff %v", cfg.MaxBackoff, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: WebStationTimeout}
	}
	if cfg.Joined == nil {
		cfg.Joined = func() bool { return len(h.Network().Peers()) > 0 }
	}
	if cfg.Peers == nil {
		cfg.Peers = func() []peer.AddrInfo {
			var out []peer.AddrInfo
			for _, p := range h.Network().Peers() {
				out = append(out, h.Peerstore().PeerInfo(p))
			}
			return out
		}
	}
	return nil
}

// Bootstrapper brings a node into its domain's overlay (draft §4.1) from
// four sources: mDNS on the LAN, pre-configured addresses, a cache of peers
// seen by a prior run, and web stations. While the node is alone
// (Joined reports false) it tries cache → static → web in rounds with
// exponential backoff; peers found by mDNS are dialled as they are found and
// retried with backoff. It keeps the cache file up to date.
type Bootstrapper struct {
	h     host.Host
	cfg   BootstrapConfig
	log   *slog.Logger
	cache *PeerCache

	joinedCh   chan struct{}
	triedCh    chan struct{} // closed after the first round, or on joining
	triedOnce  sync.Once
	joinedOnce sync.Once
	poke       chan struct{}
	saveNow    chan struct{} // a cache save on joining

	mu      sync.Mutex
	started bool
	closed  bool
	source  BootstrapSource
	cancel  context.CancelFunc
	mdns    *mdnsDiscovery

	wg sync.WaitGroup
}

// NewBootstrapper checks cfg and returns a Bootstrapper for h. It does no
// I/O; call Start. The error names the offending field and wraps
// ErrBootstrapConfig.
func NewBootstrapper(h host.Host, cfg BootstrapConfig) (*Bootstrapper, error) {
	if err := cfg.validate(h); err != nil {
		return nil, err
	}
	b := &Bootstrapper{
		h:        h,
		cfg:      cfg,
		log:      cfg.Logger.With("component", "bootstrap", "overlay", cfg.Domain),
		joinedCh: make(chan struct{}),
		triedCh:  make(chan struct{}),
		poke:     make(chan struct{}, 1),
		saveNow:  make(chan struct{}, 1),
	}
	if cfg.CacheFile != "" {
		b.cache = NewPeerCache(cfg.CacheFile, cfg.Domain, h.ID())
	}
	return b, nil
}

// Start loads the cache, starts mDNS (if enabled) and the bootstrap loop. The
// host must already listen: mDNS advertises the addresses it has now. A
// failure to start mDNS (e.g. no multicast interface) is logged and the
// other sources go on. Start returns ErrBootstrapStarted if called twice and
// an error wrapping net.ErrClosed after Close. ctx bounds the whole life of
// the bootstrapper, like Close.
func (b *Bootstrapper) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("domains: bootstrapper closed: %w", net.ErrClosed)
	}
	if b.started {
		return ErrBootstrapStarted
	}
	b.started = true
	ctx, b.cancel = context.WithCancel(ctx)

	if b.cache != nil {
		if err := b.cache.Load(); err != nil {
			b.log.Warn("ignoring unreadable peer cache; it will be replaced", "file", b.cfg.CacheFile, "err", err)
		}
	}
	if b.cfg.MDNS {
		d := newMDNSDiscovery(ctx, b)
		if err := d.start(); err != nil {
			b.log.Warn("mDNS not started; using the other sources", "service", MDNSServiceName(b.cfg.Domain), "err", err)
		} else {
			b.mdns = d
		}
	}
	b.wg.Add(1)
	go b.run(ctx)
	if b.cache != nil {
		b.wg.Add(1)
		go b.saveLoop(ctx)
	}
	return nil
}

// JoinedCh returns a channel that is closed once Joined first reports true.
func (b *Bootstrapper) JoinedCh() <-chan struct{} { return b.joinedCh }

// TriedCh is closed once the bootstrapper has tried every source it had at
// start (the cache, the static peers, the web stations) once, or has joined:
// a node that has not joined by then is alone for now (mDNS and later rounds
// may still find peers).
func (b *Bootstrapper) TriedCh() <-chan struct{} { return b.triedCh }

func (b *Bootstrapper) tried() { b.triedOnce.Do(func() { close(b.triedCh) }) }

// Source returns the source of the first successful connection made by the
// bootstrapper, or BootstrapSourceNone.
func (b *Bootstrapper) Source() BootstrapSource {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.source
}

// Close stops mDNS and the loops, waits for its goroutines and saves the
// cache, calling Peers a last time: close the Bootstrapper before what Peers
// reads (the DHT, the host). It does not close the host. A second Close returns an error
// wrapping net.ErrClosed.
func (b *Bootstrapper) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("domains: bootstrapper already closed: %w", net.ErrClosed)
	}
	b.closed = true
	cancel, d := b.cancel, b.mdns
	b.mu.Unlock()

	var err error
	if cancel != nil {
		cancel()
	}
	if d != nil {
		err = errors.Join(err, d.close())
	}
	b.wg.Wait()
	if b.cache != nil && cancel != nil {
		err = errors.Join(err, b.saveCache())
	}
	return err
}

func (b *Bootstrapper) emit(ev BootstrapEvent) {
	if b.cfg.OnEvent != nil {
		b.cfg.OnEvent(ev)
	}
}

// connected records a successful connection from src.
func (b *Bootstrapper) connected(src BootstrapSource, p peer.ID) {
	b.mu.Lock()
	if b.source == BootstrapSourceNone {
		b.source = src
	}
	b.mu.Unlock()
	b.log.Debug("connected", "source", src, "peer", p)
	b.emit(BootstrapEvent{Kind: BootstrapConnected, Source: src, Peer: p})
	select {
	case b.poke <- struct{}{}:
	default:
	}
}

// checkJoined polls Joined and closes joinedCh the first time it is true.
func (b *Bootstrapper) checkJoined() bool {
	if !b.cfg.Joined() {
		return false
	}
	b.joinedOnce.Do(func() {
		src := b.Source()
		b.log.Info("joined domain overlay", "source", src)
		close(b.joinedCh)
		b.emit(BootstrapEvent{Kind: BootstrapJoined, Source: src})
		b.saveNow <- struct{}{} // buffered, sent once
	})
	return true
}

// run is the bootstrap loop: while alone, rounds of cache → static → web
// with exponential backoff; while joined, a cheap poll of Joined.
func (b *Bootstrapper) run(ctx context.Context) {
	defer b.wg.Done()
	backoff := b.cfg.MinBackoff
	var next time.Time // zero: attempt now
	t := time.NewTicker(bootstrapPollInterval)
	defer t.Stop()
	for {
		if b.checkJoined() {
			b.tried()
			backoff, next = b.cfg.MinBackoff, time.Time{}
		} else if !time.Now().Before(next) {
			b.round(ctx)
			if ctx.Err() != nil {
				return
			}
			b.tried()
			if b.checkJoined() {
				continue
			}
			next = time.Now().Add(bootstrapJitter(backoff))
			backoff = min(2*backoff, b.cfg.MaxBackoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.poke:
		}
	}
}

// bootstrapJitter returns d ± 10 %.
func bootstrapJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// round tries the sources in the order of preference: cache, static, web.
// It stops at the first source that yields a connection.
func (b *Bootstrapper) round(ctx context.Context) {
	if b.cache != nil {
		if b.dialAll(ctx, BootstrapSourceCache, b.cache.AddrInfos()) {
			return
		}
	}
	if len(b.cfg.Static) > 0 {
		infos, _ := peer.AddrInfosFromP2pAddrs(b.cfg.Static...) // validated in NewBootstrapper
		if b.dialAll(ctx, BootstrapSourceStatic, infos) {
			return
		}
	}
	if len(b.cfg.WebURLs) > 0 {
		var infos []peer.AddrInfo
		for _, u := range b.cfg.WebURLs {
			got, err := WebStationFetch(ctx, b.cfg.HTTPClient, u, b.cfg.Domain)
			if err != nil {
				b.log.Warn("web station", "url", u, "err", err)
				continue
			}
			infos = append(infos, got...)
		}
		b.dialAll(ctx, BootstrapSourceWeb, p2pnet.MergeAddrInfos(nil, infos...))
	}
}

// dialAll connects to the candidates that are not self and not yet
// connected, a few at a time, and reports whether any connection succeeded.
func (b *Bootstrapper) dialAll(ctx context.Context, src BootstrapSource, infos []peer.AddrInfo) bool {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ok  bool
		sem = make(chan struct{}, bootstrapDialParallelism)
	)
	for _, info := range infos {
		if info.ID == b.h.ID() || len(info.Addrs) == 0 ||
			b.h.Network().Connectedness(info.ID) == network.Connected {
			continue
		}
		b.emit(BootstrapEvent{Kind: BootstrapFound, Source: src, Peer: info.ID})
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ok
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := b.dial(ctx, src, info); err == nil {
				mu.Lock()
				ok = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok
}

// dial makes one connection attempt and reports it.
func (b *Bootstrapper) dial(ctx context.Context, src BootstrapSource, info peer.AddrInfo) error {
	dctx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	defer cancel()
	// The swarm backs off from a peer for 5 s to 5 min after a failed dial;
	// the bootstrapper has its own backoff, so it clears the swarm's.
	if sw, ok := b.h.Network().(interface{ Backoff() *swarm.DialBackoff }); ok {
		sw.Backoff().Clear(info.ID)
	}
	err := b.h.Connect(dctx, info)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Debug("connect failed", "source", src, "peer", info.ID, "err", err)
			b.emit(BootstrapEvent{Kind: BootstrapFailed, Source: src, Peer: info.ID, Err: err})
		}
		return err
	}
	b.connected(src, info.ID)
	return nil
}

func (b *Bootstrapper) saveLoop(ctx context.Context) {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.CacheInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.saveNow:
			// Give the overlay a moment to fill its routing table.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		case <-t.C:
		}
		if err := b.saveCache(); err != nil {
			b.log.Warn("saving peer cache", "file", b.cfg.CacheFile, "err", err)
		}
	}
}

// saveCache records the current peers in the cache and writes it.
func (b *Bootstrapper) saveCache() error {
	b.cache.Observe(b.cfg.Peers(), time.Now())
	return b.cache.Save()
}
