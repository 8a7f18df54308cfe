package bootstrap

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/domains"
)

// ErrBadConfig wraps every error of New's options; the message names the
// option at fault.
var ErrBadConfig = errors.New("bootstrap: invalid option")

// Defaults of the options.
const (
	DefaultMinBackoff    = time.Second
	DefaultMaxBackoff    = time.Minute
	DefaultDialTimeout   = 10 * time.Second
	DefaultCacheInterval = time.Minute
)

// Option configures a Bootstrapper (New). Each of the four sources of draft
// §4.1 is off unless an option turns it on: WithMDNS, WithStatic,
// WithCacheFile, WithWebStations.
type Option func(*config) error

type config struct {
	mdns          bool
	static        []ma.Multiaddr
	cacheFile     string
	webURLs       []string
	peers         func() []peer.AddrInfo
	joined        func() bool
	minBackoff    time.Duration
	maxBackoff    time.Duration
	dialTimeout   time.Duration
	cacheInterval time.Duration
	log           *slog.Logger
	httpClient    *http.Client
	onEvent       func(Event)
	clock         clock.Clock
}

func badOption(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrBadConfig, name, fmt.Sprintf(format, args...))
}

// WithMDNS turns on discovery by multicast DNS on the LAN, with one service
// name per domain (MDNSServiceName). The host's listen addresses are
// advertised as they are at Start.
func WithMDNS() Option { return func(c *config) error { c.mdns = true; return nil } }

// WithStatic adds pre-configured addresses of persistent domain nodes:
// /ip4/…/tcp/…/p2p/<id>. Each must name a peer and a transport address.
func WithStatic(addrs ...ma.Multiaddr) Option {
	return func(c *config) error {
		for i, a := range addrs {
			name := fmt.Sprintf("WithStatic[%d]", i)
			if a == nil {
				return badOption(name, "nil address")
			}
			info, err := peer.AddrInfoFromP2pAddr(a)
			if err != nil {
				return badOption(name, "%q: %v (want /ip4/…/tcp/…/p2p/<id>)", a, err)
			}
			if len(info.Addrs) == 0 {
				return badOption(name, "%q has no transport address", a)
			}
		}
		c.static = append(c.static, addrs...)
		return nil
	}
}

// WithCacheFile keeps the addresses of domain peers seen recently in a JSON
// file (see PeerCache), e.g. <datadir>/peers-<domain>.json. It is read at
// Start, tried first, and written a second after joining, every cache
// interval and at Close. Its directory must exist.
func WithCacheFile(path string) Option {
	return func(c *config) error {
		st, err := os.Stat(filepath.Dir(path))
		if err != nil {
			return badOption("WithCacheFile", "%v", err)
		}
		if !st.IsDir() {
			return badOption("WithCacheFile", "%s is not a directory", filepath.Dir(path))
		}
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			return badOption("WithCacheFile", "%s is a directory", path)
		}
		c.cacheFile = path
		return nil
	}
}

// WithWebStations adds web stations: http(s) URLs that return the domain's
// peers in the format of WebStationHandler.
func WithWebStations(urls ...string) Option {
	return func(c *config) error {
		for i, s := range urls {
			name := fmt.Sprintf("WithWebStations[%d]", i)
			u, err := url.Parse(s)
			if err != nil {
				return badOption(name, "%v", err)
			}
			if u.Scheme != "http" && u.Scheme != "https" {
				return badOption(name, "%q: scheme must be http or https", s)
			}
			if u.Host == "" {
				return badOption(name, "%q has no host", s)
			}
		}
		c.webURLs = append(c.webURLs, urls...)
		return nil
	}
}

// WithPeers sets how the current peers of the domain are read, to be cached
// (default: the host's connected peers with their peerstore addresses).
func WithPeers(peers func() []peer.AddrInfo) Option {
	return func(c *config) error {
		if peers == nil {
			return badOption("WithPeers", "nil function")
		}
		c.peers = peers
		return nil
	}
}

// WithJoined sets how the bootstrapper tells that the node has joined the
// overlay, e.g. its routing table is not empty (default: the host has a
// connected peer).
func WithJoined(joined func() bool) Option {
	return func(c *config) error {
		if joined == nil {
			return badOption("WithJoined", "nil function")
		}
		c.joined = joined
		return nil
	}
}

// WithBackoff bounds the exponential backoff between rounds of cache →
// static → web while the node is alone, and between retries of an mDNS peer
// (defaults DefaultMinBackoff, DefaultMaxBackoff).
func WithBackoff(lo, hi time.Duration) Option {
	return func(c *config) error {
		if lo <= 0 || hi <= 0 {
			return badOption("WithBackoff", "%v, %v: want positive durations", lo, hi)
		}
		if hi < lo {
			return badOption("WithBackoff", "maximum %v is less than the minimum %v", hi, lo)
		}
		c.minBackoff, c.maxBackoff = lo, hi
		return nil
	}
}

// WithDialTimeout bounds one connection attempt (default DefaultDialTimeout).
func WithDialTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return badOption("WithDialTimeout", "%v: want a positive duration", d)
		}
		c.dialTimeout = d
		return nil
	}
}

// WithCacheInterval sets the period of cache saves (default
// DefaultCacheInterval).
func WithCacheInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return badOption("WithCacheInterval", "%v: want a positive duration", d)
		}
		c.cacheInterval = d
		return nil
	}
}

// WithLogger sets the logger of warnings and debug messages (default:
// discard). The bootstrapper adds "component" and "overlay".
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return badOption("WithLogger", "nil logger")
		}
		c.log = l
		return nil
	}
}

// WithHTTPClient sets the client that fetches web stations (default: one
// with a WebStationTimeout timeout).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return badOption("WithHTTPClient", "nil client")
		}
		c.httpClient = hc
		return nil
	}
}

// WithEventHook sets a function called for every Event, e.g. to count
// connections per source in metrics, from several of the bootstrapper's
// goroutines at once. It must not block.
func WithEventHook(f func(Event)) Option {
	return func(c *config) error { c.onEvent = f; return nil }
}

// WithClock sets the clock of the bootstrapper's rounds, backoffs, cache
// saves and the times in the cache (default the system clock). Dial and
// HTTP timeouts stay on the system clock.
func WithClock(clk clock.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return badOption("WithClock", "nil clock")
		}
		c.clock = clk
		return nil
	}
}

// newConfig applies the defaults, then opts, then validates the whole.
func newConfig(h host.Host, overlay string, opts []Option) (config, error) {
	c := config{
		minBackoff: DefaultMinBackoff, maxBackoff: DefaultMaxBackoff,
		dialTimeout: DefaultDialTimeout, cacheInterval: DefaultCacheInterval,
		log:        slog.New(slog.DiscardHandler),
		httpClient: &http.Client{Timeout: WebStationTimeout},
		clock:      clock.New(),
	}
	if h == nil {
		return c, fmt.Errorf("%w: nil host", ErrBadConfig)
	}
	if overlay != domains.GlobalName {
		if err := domains.ValidateDomain(overlay); err != nil {
			return c, badOption("overlay", "%v", err)
		}
	}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return c, err
		}
	}
	if c.joined == nil {
		c.joined = func() bool { return len(h.Network().Peers()) > 0 }
	}
	if c.peers == nil {
		c.peers = func() []peer.AddrInfo {
			var out []peer.AddrInfo
			for _, p := range h.Network().Peers() {
				out = append(out, h.Peerstore().PeerInfo(p))
			}
			return out
		}
	}
	return c, nil
}
