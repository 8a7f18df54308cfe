package sipdns

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Transports a client can support, as they appear in Target.Transport and in
// a URI's transport parameter.
const (
	UDP = "udp"
	TCP = "tcp"
	TLS = "tls"
)

type config struct {
	servers    []string
	resolvConf string
	transports []string
	cacheSize  int
	maxTTL     time.Duration
	negTTL     time.Duration
	timeout    time.Duration
	attempts   int
	ipv4, ipv6 bool
	preferIPv6 bool
	maxTargets int
	policy     *Policy
	log        *slog.Logger
	now        func() time.Time
	randN      func(int) int
}

// Option configures a Resolver.
type Option func(*config) error

func defaults() config {
	return config{
		resolvConf: "/etc/resolv.conf",
		transports: []string{UDP, TCP},
		cacheSize:  1024,
		maxTTL:     time.Hour,
		negTTL:     30 * time.Second,
		timeout:    2 * time.Second,
		attempts:   2,
		ipv4:       true,
		ipv6:       true,
		maxTargets: 16,
		log:        slog.New(slog.DiscardHandler),
		now:        time.Now,
		randN:      rand.IntN,
	}
}

// WithServers sets the DNS servers (recursive resolvers) to ask, as host:port
// or host (port 53), tried in order. The default is the nameserver lines of
// /etc/resolv.conf.
func WithServers(addrs ...string) Option {
	return func(c *config) error {
		c.servers = nil
		for _, a := range addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				a = net.JoinHostPort(a, "53")
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("%w: server %q: %v", ErrConfig, a, err)
			}
			c.servers = append(c.servers, a)
		}
		return nil
	}
}

// WithResolvConf names the resolv.conf file whose nameservers are used when
// WithServers is not given (default /etc/resolv.conf).
func WithResolvConf(path string) Option {
	return func(c *config) error { c.resolvConf = path; return nil }
}

// WithTransports sets the transports the client supports ("udp", "tcp",
// "tls"), in the order it prefers them when the domain publishes no NAPTR
// records (RFC 3263 §4.1). NAPTR records of other transports are skipped.
// The default is udp, tcp.
func WithTransports(ts ...string) Option {
	return func(c *config) error {
		c.transports = nil
		for _, t := range ts {
			t = strings.ToLower(t)
			if t != UDP && t != TCP && t != TLS {
				return fmt.Errorf("%w: transport %q (want udp, tcp or tls)", ErrConfig, t)
			}
			if !slices.Contains(c.transports, t) {
				c.transports = append(c.transports, t)
			}
		}
		if len(c.transports) == 0 {
			return fmt.Errorf("%w: no transport", ErrConfig)
		}
		return nil
	}
}

// WithCacheSize bounds the cache to n answers (default 1024); 0 turns the
// cache off.
func WithCacheSize(n int) Option {
	return notNegative("cache size", n, func(c *config) { c.cacheSize = n })
}

// notNegative is an option that refuses a negative v, named by what, and else
// calls set.
func notNegative[T int | time.Duration](what string, v T, set func(*config)) Option {
	return func(c *config) error {
		if v < 0 {
			return fmt.Errorf("%w: %s %v", ErrConfig, what, v)
		}
		set(c)
		return nil
	}
}

// WithMaxTTL caps how long an answer is cached, whatever its TTL says
// (default 1 h).
func WithMaxTTL(d time.Duration) Option {
	return notNegative("max TTL", d, func(c *config) { c.maxTTL = d })
}

// WithNegativeTTL sets how long a negative answer (NXDOMAIN, no records)
// that carries no SOA is cached (default 30 s). With a SOA, RFC 2308's
// min(SOA TTL, SOA minimum) is used.
func WithNegativeTTL(d time.Duration) Option {
	return notNegative("negative TTL", d, func(c *config) { c.negTTL = d })
}

// WithTimeout sets the time one query to one server may take (default 2 s)
// and how many rounds over the servers are made (default 2).
func WithTimeout(d time.Duration, attempts int) Option {
	return func(c *config) error {
		if d <= 0 || attempts < 1 {
			return fmt.Errorf("%w: timeout %v, attempts %d", ErrConfig, d, attempts)
		}
		c.timeout, c.attempts = d, attempts
		return nil
	}
}

// WithAddressFamilies chooses which address records are asked for: A (IPv4)
// and/or AAAA (IPv6); both by default. preferIPv6 puts IPv6 addresses of a
// host before its IPv4 ones (default: IPv4 first).
func WithAddressFamilies(ipv4, ipv6, preferIPv6 bool) Option {
	return func(c *config) error {
		if !ipv4 && !ipv6 {
			return fmt.Errorf("%w: no address family", ErrConfig)
		}
		c.ipv4, c.ipv6, c.preferIPv6 = ipv4, ipv6, preferIPv6
		return nil
	}
}

// WithMaxTargets bounds the targets one Resolve returns (default 16).
func WithMaxTargets(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max targets %d", ErrConfig, n)
		}
		c.maxTargets = n
		return nil
	}
}

// WithPolicy applies p to every resolution: refused domains are not looked
// up, routes replace the domain, refused addresses are left out.
func WithPolicy(p *Policy) Option {
	return func(c *config) error {
		if err := p.Validate(); err != nil {
			return err
		}
		c.policy = p
		return nil
	}
}

// WithLogger sets the logger (default: none). Lookups log at debug level.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrConfig)
		}
		c.log = l
		return nil
	}
}

// WithClock sets the clock used for cache expiry (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrConfig)
		}
		c.now = now
		return nil
	}
}

// WithRand sets the source of the weighted random order of SRV records of
// equal priority: randN(n) returns an integer in [0, n) (default
// math/rand/v2.IntN).
func WithRand(randN func(n int) int) Option {
	return func(c *config) error {
		if randN == nil {
			return fmt.Errorf("%w: nil rand", ErrConfig)
		}
		c.randN = randN
		return nil
	}
}

func (c *config) validate() error {
	if len(c.servers) == 0 {
		cc, err := dns.ClientConfigFromFile(c.resolvConf)
		if err != nil {
			return fmt.Errorf("%w: no DNS server given and %s unreadable: %v", ErrConfig, c.resolvConf, err)
		}
		for _, s := range cc.Servers {
			c.servers = append(c.servers, net.JoinHostPort(s, cc.Port))
		}
		if len(c.servers) == 0 {
			return fmt.Errorf("%w: no DNS server given and none in %s", ErrConfig, c.resolvConf)
		}
	}
	return nil
}
