package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/hiersip/hiersip/internal/p2pnet"
)

// ErrStarted is returned by a second Start.
var ErrStarted = errors.New("bootstrap: already started")

const (
	// pollInterval is how often the joined test is polled.
	pollInterval = 100 * time.Millisecond
	// dialParallelism bounds concurrent dials of one source.
	dialParallelism = 8
)

// Bootstrapper brings a node into an overlay (draft §4.1) from four
// sources: mDNS on the LAN, pre-configured addresses, a cache of peers seen
// by a prior run, and web stations. While the node is alone (not joined) it
// tries cache → static → web in rounds with exponential backoff; peers found
// by mDNS are dialled as they are found and retried with backoff. It keeps
// the cache file up to date.
type Bootstrapper struct {
	h       host.Host
	overlay string
	cfg     config
	clock   clock.Clock
	log     *slog.Logger
	cache   *PeerCache

	joinedCh   chan struct{}
	triedCh    chan struct{} // closed after the first round, or on joining
	triedOnce  sync.Once
	joinedOnce sync.Once
	poke       chan struct{}
	saveNow    chan struct{} // a cache save on joining

	// roundHook, when set (tests), is called after every round with the
	// clock's time at its start and the time of the next round.
	roundHook func(start, next time.Time)

	mu      sync.Mutex
	started bool
	closed  bool
	source  Source
	cancel  context.CancelFunc
	mdns    *mdnsDiscovery

	wg sync.WaitGroup
}

// New returns a Bootstrapper of h for overlay (a domain, or
// domains.GlobalName for the global overlay), configured by opts. It does no
// network I/O; call Start. An invalid option returns an error that names it
// and wraps ErrBadConfig.
func New(h host.Host, overlay string, opts ...Option) (*Bootstrapper, error) {
	cfg, err := newConfig(h, overlay, opts)
	if err != nil {
		return nil, err
	}
	b := &Bootstrapper{
		h:        h,
		overlay:  overlay,
		cfg:      cfg,
		clock:    cfg.clock,
		log:      cfg.log.With("component", "bootstrap", "overlay", overlay),
		joinedCh: make(chan struct{}),
		triedCh:  make(chan struct{}),
		poke:     make(chan struct{}, 1),
		saveNow:  make(chan struct{}, 1),
	}
	if cfg.cacheFile != "" {
		b.cache = NewPeerCache(cfg.cacheFile, overlay, h.ID())
		b.cache.now = cfg.clock.Now
	}
	return b, nil
}

// Start loads the cache, starts mDNS (if enabled) and the bootstrap loop. The
// host must already listen: mDNS advertises the addresses it has now. A
// failure to start mDNS (e.g. no multicast interface) is logged and the
// other sources go on. Start returns ErrStarted if called twice and an error
// wrapping net.ErrClosed after Close. ctx bounds the whole life of the
// bootstrapper, like Close. The cache file and mDNS are started under no
// lock; a Close meanwhile waits for them.
func (b *Bootstrapper) Start(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("bootstrap: closed: %w", net.ErrClosed)
	}
	if b.started {
		b.mu.Unlock()
		return ErrStarted
	}
	b.started = true
	ctx, b.cancel = context.WithCancel(ctx)
	b.wg.Add(1) // the start itself: Close waits for it
	b.mu.Unlock()
	defer b.wg.Done()

	if b.cache != nil {
		if err := b.cache.Load(); err != nil {
			b.log.Warn("ignoring unreadable peer cache; it will be replaced", "file", b.cfg.cacheFile, "err", err)
		}
	}
	var d *mdnsDiscovery
	if b.cfg.mdns {
		d = newMDNSDiscovery(ctx, b)
		if err := d.start(); err != nil {
			b.log.Warn("mDNS not started; using the other sources", "service", MDNSServiceName(b.overlay), "err", err)
			d = nil
		}
	}
	b.mu.Lock()
	if b.closed { // Close ran meanwhile: it could not stop what was not there yet
		b.mu.Unlock()
		if d != nil {
			_ = d.close()
		}
		return fmt.Errorf("bootstrap: closed: %w", net.ErrClosed)
	}
	b.mdns = d
	b.wg.Add(1)
	go b.run(ctx)
	if b.cache != nil {
		b.wg.Add(1)
		go b.saveLoop(ctx)
	}
	b.mu.Unlock()
	return nil
}

// Joined returns a channel that is closed once the node has first joined.
func (b *Bootstrapper) Joined() <-chan struct{} { return b.joinedCh }

// Tried is closed once the bootstrapper has tried every source it had at
// start (the cache, the static peers, the web stations) once, or has joined:
// a node that has not joined by then is alone for now (mDNS and later rounds
// may still find peers).
func (b *Bootstrapper) Tried() <-chan struct{} { return b.triedCh }

func (b *Bootstrapper) markTried() { b.triedOnce.Do(func() { close(b.triedCh) }) }

// Source returns the source of the first successful connection made by the
// bootstrapper, or SourceNone.
func (b *Bootstrapper) Source() Source {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.source
}

// Close stops mDNS and the loops, waits for its goroutines and saves the
// cache, reading the peers (WithPeers) a last time: close the Bootstrapper
// before what that reads (the DHT, the host). It does not close the host. A
// second Close returns an error wrapping net.ErrClosed.
func (b *Bootstrapper) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("bootstrap: already closed: %w", net.ErrClosed)
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

func (b *Bootstrapper) emit(ev Event) {
	if b.cfg.onEvent != nil {
		b.cfg.onEvent(ev)
	}
}

// connected records a successful connection from src.
func (b *Bootstrapper) connected(src Source, p peer.ID) {
	b.mu.Lock()
	if b.source == SourceNone {
		b.source = src
	}
	b.mu.Unlock()
	b.log.Debug("connected", "source", src, "peer", p)
	b.emit(Event{Kind: EventConnected, Source: src, Peer: p})
	select {
	case b.poke <- struct{}{}:
	default:
	}
}

// checkJoined polls the joined test and closes joinedCh the first time it holds.
func (b *Bootstrapper) checkJoined() bool {
	if !b.cfg.joined() {
		return false
	}
	b.joinedOnce.Do(func() {
		src := b.Source()
		b.log.Info("joined overlay", "source", src)
		close(b.joinedCh)
		b.emit(Event{Kind: EventJoined, Source: src})
		b.saveNow <- struct{}{} // buffered, sent once
	})
	return true
}

// run is the bootstrap loop: while alone, rounds of cache → static → web
// with exponential backoff on the bootstrapper's clock; while joined, a
// cheap poll of the joined test.
func (b *Bootstrapper) run(ctx context.Context) {
	defer b.wg.Done()
	backoff := b.cfg.minBackoff
	var next time.Time // zero: attempt now
	t := b.clock.Ticker(pollInterval)
	defer t.Stop()
	for {
		if b.checkJoined() {
			b.markTried()
			backoff, next = b.cfg.minBackoff, time.Time{}
		} else if start := b.clock.Now(); !start.Before(next) {
			b.round(ctx)
			if ctx.Err() != nil {
				return
			}
			if b.checkJoined() {
				b.markTried()
				continue
			}
			next = b.clock.Now().Add(jitter(backoff))
			backoff = min(2*backoff, b.cfg.maxBackoff)
			if b.roundHook != nil {
				b.roundHook(start, next)
			}
			b.markTried()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.poke:
		}
	}
}

// jitter returns d ± 10 %.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// round tries the sources in the order of preference: cache, static, web.
// It stops at the first source that yields a connection.
func (b *Bootstrapper) round(ctx context.Context) {
	if b.cache != nil {
		if b.dialAll(ctx, SourceCache, b.cache.AddrInfos()) {
			return
		}
	}
	if len(b.cfg.static) > 0 {
		infos, _ := peer.AddrInfosFromP2pAddrs(b.cfg.static...) // validated by WithStatic
		if b.dialAll(ctx, SourceStatic, infos) {
			return
		}
	}
	if len(b.cfg.webURLs) > 0 {
		var infos []peer.AddrInfo
		for _, u := range b.cfg.webURLs {
			got, err := FetchWebStation(ctx, b.cfg.httpClient, u, b.overlay)
			if err != nil {
				b.log.Warn("web station", "url", u, "err", err)
				continue
			}
			infos = append(infos, got...)
		}
		b.dialAll(ctx, SourceWeb, p2pnet.MergeAddrInfos(nil, infos...))
	}
}

// dialAll connects to the candidates that are not self and not yet
// connected, a few at a time, and reports whether any connection succeeded.
func (b *Bootstrapper) dialAll(ctx context.Context, src Source, infos []peer.AddrInfo) bool {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ok  bool
		sem = make(chan struct{}, dialParallelism)
	)
	for _, info := range infos {
		if info.ID == b.h.ID() || len(info.Addrs) == 0 ||
			b.h.Network().Connectedness(info.ID) == network.Connected {
			continue
		}
		b.emit(Event{Kind: EventFound, Source: src, Peer: info.ID})
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

// dial makes one connection attempt and reports it. The attempt is bounded
// on the system clock: the network runs in real time.
func (b *Bootstrapper) dial(ctx context.Context, src Source, info peer.AddrInfo) error {
	dctx, cancel := context.WithTimeout(ctx, b.cfg.dialTimeout)
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
			b.emit(Event{Kind: EventFailed, Source: src, Peer: info.ID, Err: err})
		}
		return err
	}
	b.connected(src, info.ID)
	return nil
}

func (b *Bootstrapper) saveLoop(ctx context.Context) {
	defer b.wg.Done()
	t := b.clock.Ticker(b.cfg.cacheInterval)
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
			case <-b.clock.After(time.Second):
			}
		case <-t.C:
		}
		if err := b.saveCache(); err != nil {
			b.log.Warn("saving peer cache", "file", b.cfg.cacheFile, "err", err)
		}
	}
}

// saveCache records the current peers in the cache and writes it.
func (b *Bootstrapper) saveCache() error {
	b.cache.Observe(b.cfg.peers(), b.clock.Now())
	return b.cache.Save()
}
