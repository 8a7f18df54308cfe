package node

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/hiersip/hiersip/domains"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	ma "github.com/multiformats/go-multiaddr"
)

// Defaults of Config.
const (
	DefaultRepublishInterval = 5 * time.Minute
	DefaultLookupTimeout     = 5 * time.Second
)

// DefaultListenAddrs are the libp2p listen addresses of a node that creates
// its own host: TCP and QUIC on every interface, ports chosen by the system.
var DefaultListenAddrs = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}

// Config configures a Node. The zero value is not valid: Domain is required.
type Config struct {
	// Domain is the node's domain (its local overlay), e.g. "pastry".
	Domain string
	// KnownDomains are further domain names used to decide the domain of an
	// AOR (longest suffix match, DESIGN §2).
	KnownDomains []string
	// DataDir holds the identity key and the peer cache. Empty: a fresh
	// in-memory identity and no peer cache.
	DataDir string
	// ListenAddrs are the libp2p listen multiaddrs of a node that creates its
	// own host (default DefaultListenAddrs). Ignored by NewWithHost.
	ListenAddrs []string
	// NAT configures relays, hole punching and reachability of a node that
	// creates its own host (New). Ignored by NewWithHost.
	NAT NATConfig
	// Bootstrap selects the bootstrap sources of the domain (draft §4.1).
	Bootstrap BootstrapConfig
	// Global selects the bootstrap sources of the global overlay, which the
	// node joins when it becomes a proxy: well-known nodes of the global
	// overlay, web stations, the cache, mDNS.
	Global BootstrapConfig
	// GlobalSeed keeps the node in the global overlay whatever its role, as
	// a well-known entry point for the proxies of every domain (their
	// Global.Peers). Proxies can only meet in the global overlay through
	// such seeds, their peer caches, web stations or mDNS: set it on
	// public, long-lived nodes.
	GlobalSeed bool
	// RepublishInterval is how often the node re-stores its bindings
	// (default DefaultRepublishInterval).
	RepublishInterval time.Duration
	// LookupTimeout bounds a lookup whose context has no deadline
	// (default DefaultLookupTimeout).
	LookupTimeout time.Duration
	// LookupRate and LookupBurst bound the lookups (GET_VALUE requests) the
	// node's overlays answer per remote peer and second (defaults
	// domains.DefaultLookupRate and DefaultLookupBurst; excess requests
	// wait). A negative LookupRate turns the bound off (load generators).
	LookupRate  float64
	LookupBurst int
	// Enrollment makes the node's domain an enrolled domain: bindings need a
	// certificate of the domain's authority. Nil: an open domain, where
	// names are first come, first served.
	Enrollment *EnrollmentConfig
	// SIP configures the SIP bridge; nil runs none (an overlay-only node).
	SIP *SIPConfig
	// Media configures the media relay that runs with the SIP bridge (on by default).
	Media MediaConfig
	// Push configures the waking of sleeping phones through a push gateway
	// (off without a gateway URL).
	Push PushConfig
	// Mailbox configures messages that wait for users with no live device
	// (on by default, with a SIP bridge).
	Mailbox MailboxConfig
	// Election configures the node's part in the proxy election.
	Election ElectionConfig
	// PubSub is the gossipsub the election announces on. Nil: the node
	// creates one on its host. An application that already runs pubsub on
	// the host passes its own (a host can carry only one).
	PubSub *pubsub.PubSub
	// Metrics receives the node's metrics (default: NewMetrics()). A
	// Metrics belongs to one node.
	Metrics *Metrics
	// Logger receives the node's logs (default: discard; the daemon passes
	// its own). The node adds the keys "node" (its peer ID) and "domain".
	Logger *slog.Logger
	// LookupTrace, when set, is called for every resolution the node makes
	// to route calls (LookupEvent: draft Figure 3 F1/F2, F5/F6, F9/F10). It
	// runs on the node's goroutines and must not block.
	LookupTrace func(LookupEvent)
	// Clock is the node's clock (default the system clock): the times and
	// sequence numbers of its records, the certificates' validity, the
	// re-stores, the election and the bootstrap rounds follow it. Network
	// deadlines and measured latencies stay on the system clock. Tests
	// inject a clock.Mock.
	Clock clock.Clock
}

// BootstrapConfig selects how a node finds the peers of its domain.
type BootstrapConfig struct {
	// DisableMDNS turns off LAN discovery by mDNS (on by default).
	DisableMDNS bool
	// Peers are pre-configured multiaddrs with /p2p/ peer IDs.
	Peers []string
	// WebStations are URLs that return the domain's peer list.
	WebStations []string
	// DisableCache turns off the peer cache in DataDir.
	DisableCache bool
}

// lookupLimit returns the overlays' lookup bound option, if configured.
func (c Config) lookupLimit() []domains.OverlayOption {
	switch {
	case c.LookupRate < 0:
		return []domains.OverlayOption{domains.WithLookupLimit(0, 0)}
	case c.LookupRate == 0 && c.LookupBurst == 0:
		return nil
	}
	rate, burst := c.LookupRate, c.LookupBurst
	if rate == 0 {
		rate = domains.DefaultLookupRate
	}
	if burst == 0 {
		burst = max(int(rate*2), 1)
	}
	return []domains.OverlayOption{domains.WithLookupLimit(rate, burst)}
}

// overlayOptions returns the options of the node's overlays: its clock, its
// logger, its refusal counter and its lookup bound.
func (c Config) overlayOptions(log *slog.Logger) []domains.OverlayOption {
	return append([]domains.OverlayOption{domains.WithClock(c.Clock), domains.WithLogger(log),
		domains.WithRefusalHook(c.Metrics.refuse)}, c.lookupLimit()...)
}

// users returns the users given already loaded (SIPConfig.Users), if any.
func (c Config) users() *Users {
	if c.SIP == nil {
		return nil
	}
	return c.SIP.Users
}

// ConfigError reports an invalid configuration value, naming its setting by
// the key users write in the daemon's configuration ("sip.udp",
// "nat.relays[0]"), whether it came from a file, the environment, a flag or
// a Config of an application.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return "config: " + e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Validate checks every setting of c, as New and NewWithHost do, and
// returns a *ConfigError naming the first invalid one.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns a copy of c with defaults filled in, or an error
// naming the first invalid field. It is the one validation of a Config.
func (c Config) withDefaults() (Config, error) {
	if err := domains.ValidateDomain(c.Domain); err != nil {
		return c, &ConfigError{"domain", err}
	}
	for i, d := range c.KnownDomains {
		if err := domains.ValidateDomain(d); err != nil {
			return c, &ConfigError{fmt.Sprintf("known_domains[%d]", i), err}
		}
	}
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = DefaultListenAddrs
	}
	for i, a := range c.ListenAddrs {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return c, &ConfigError{fmt.Sprintf("listen_addrs[%d]", i), err}
		}
	}
	for name, bc := range map[string]BootstrapConfig{"bootstrap": c.Bootstrap, "global": c.Global} {
		for i, a := range bc.Peers {
			m, err := ma.NewMultiaddr(a)
			if err != nil {
				return c, &ConfigError{fmt.Sprintf("%s.peers[%d]", name, i), err}
			}
			if _, err := m.ValueForProtocol(ma.P_P2P); err != nil {
				return c, &ConfigError{fmt.Sprintf("%s.peers[%d]", name, i), errors.New("missing /p2p/<peer-id>")}
			}
		}
		for i, u := range bc.WebStations {
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				return c, &ConfigError{fmt.Sprintf("%s.web_stations[%d]", name, i), fmt.Errorf("%q is not an http(s) URL", u)}
			}
		}
	}
	switch {
	case c.RepublishInterval == 0:
		c.RepublishInterval = DefaultRepublishInterval
	case c.RepublishInterval < time.Second:
		return c, &ConfigError{"republish_interval", fmt.Errorf("%v is below the minimum of 1s", c.RepublishInterval)}
	}
	if c.LookupBurst < 0 {
		return c, &ConfigError{"lookup_burst", fmt.Errorf("%d is negative", c.LookupBurst)}
	}
	switch {
	case c.LookupTimeout == 0:
		c.LookupTimeout = DefaultLookupTimeout
	case c.LookupTimeout < 0:
		return c, &ConfigError{"lookup_timeout", fmt.Errorf("%v is negative", c.LookupTimeout)}
	}
	if c.Enrollment != nil {
		ec := *c.Enrollment
		ec.Certificates = slices.Clone(ec.Certificates)
		if err := ec.validate(c.Domain); err != nil {
			return c, err
		}
		c.Enrollment = &ec
	}
	if _, err := c.NAT.validate(); err != nil {
		return c, err
	}
	if err := c.Election.validate(); err != nil {
		return c, err
	}
	if err := c.Mailbox.validate(); err != nil {
		return c, err
	}
	if err := c.Push.validate(); err != nil {
		return c, err
	}
	if c.SIP != nil {
		if err := c.SIP.validate(); err != nil {
			return c, err
		}
		if !c.Media.Disable {
			udp, tcp := c.SIP.listen()
			if _, err := c.Media.options(sipHost(udp, tcp)); err != nil {
				return c, err
			}
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
	if c.Clock == nil {
		c.Clock = clock.New()
	}
	return c, nil
}
