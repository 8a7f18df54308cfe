package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/sipbridge"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// SIPConfig configures the node's SIP bridge: the registrar and outbound
// proxy of its local user agents, and SIP routing between nodes.
type SIPConfig struct {
	// UDP and TCP are the UA-facing listen addresses (host:port; port 0
	// picks a free port). Both empty: DefaultSIPListen for both.
	UDP, TCP string
	// UsersFile, when set, turns on digest authentication of local UAs
	// (see sipbridge.LoadUsers for the format).
	UsersFile string
	// MinExpires, DefaultExpires and MaxExpires bound registrations (zero:
	// the bridge's defaults).
	MinExpires, DefaultExpires, MaxExpires time.Duration
	// Limits are the bridge's rate limits and transaction bounds (nil:
	// sipbridge.DefaultLimits()).
	Limits *sipbridge.Limits
	// Advertise is the address ("host" or "host:port") the node writes into
	// Via, Record-Route and Contact instead of its interface addresses: the
	// public address of a server behind NAT or of a cloud instance
	// (sipbridge.WithAdvertise). Empty: the address of the interface each
	// message leaves from.
	Advertise string
	// NATKeepalive is how often the node sends OPTIONS to its registered
	// phones behind NAT (zero: sipbridge.DefaultNATKeepalive; negative: never).
	NATKeepalive time.Duration
	// Options are passed to sipbridge.New after the ones above.
	Options []sipbridge.Option
}

// DefaultSIPListen is the UA-facing listen address of a node's SIP bridge.
const DefaultSIPListen = "127.0.0.1:5060"

// RegistrationsFile is the file in the data directory that keeps the SIP
// registrar's contacts across restarts (sipbridge.WithRegistrationStore).
const RegistrationsFile = "registrations.json"

// ElectionConfig configures the node's part in its domain's proxy election
// (draft §6).
type ElectionConfig struct {
	// Disable keeps the node out of the election entirely: it never
	// becomes proxy and learns its proxies from the domain overlay only.
	Disable bool
	// OptOut: the node takes part but is never proxy or candidate.
	OptOut bool
	// Weight is the operator's multiplier of the node's utility (default 1).
	Weight float64
	// Bandwidth is the node's bandwidth in bit/s for its utility (0: unknown).
	Bandwidth float64
	// Reachability forces "public" or "private" for the election; empty
	// follows NAT.ForceReachability on a host New created (the daemon sets
	// only that one: nat.reachability), else AutoNAT. It is for NewWithHost,
	// whose host has a NAT configuration of its own.
	Reachability string
	// Config holds the election's protocol parameters (zero: defaults).
	Config election.Config
	// Options are passed to election.NewRunner after the ones above.
	Options []election.Option
}

func (c ElectionConfig) options(n *Node) ([]election.Option, error) {
	opts := []election.Option{election.WithConfig(c.Config), election.WithLogger(n.nodeLog),
		// Members only: peers of the domain overlay (README, "The proxy election").
		election.WithMembership(n.IsMember),
		election.WithRefusalHook(func(reason string) { n.cfg.Metrics.Refused("election", reason) })}
	if n.enroll != nil {
		// Certified nodes only; a node without a valid certificate of its
		// own never becomes proxy or candidate.
		opts = append(opts, election.WithCertificates(n.memberCert(), n.verifyMember))
	}
	if c.OptOut {
		opts = append(opts, election.WithOptOut())
	}
	if c.Weight != 0 {
		if c.Weight < 0 {
			return nil, &ConfigError{"election.weight", fmt.Errorf("%v is negative", c.Weight)}
		}
		opts = append(opts, election.WithWeight(c.Weight))
	}
	if c.Bandwidth < 0 {
		return nil, &ConfigError{"election.bandwidth", fmt.Errorf("%v is negative", c.Bandwidth)}
	}
	if c.Bandwidth > 0 {
		opts = append(opts, election.WithBandwidth(c.Bandwidth))
	}
	switch reach := n.cfg.electionReachability(n.ownHost); reach {
	case "":
	case "public":
		opts = append(opts, election.WithReachability(election.ReachabilityPublic))
	case "private":
		opts = append(opts, election.WithReachability(election.ReachabilityPrivate))
	default:
		return nil, &ConfigError{"election.reachability", fmt.Errorf("%q: want public, private or empty", reach)}
	}
	return append(opts, c.Options...), nil
}

// startServices starts the election runner and the SIP bridge, as
// configured.
func (n *Node) startServices() error {
	cfg := n.cfg
	if !cfg.Election.Disable {
		ps := cfg.PubSub
		if ps == nil {
			var err error
			if ps, err = pubsub.NewGossipSub(n.ctx, n.h); err != nil {
				return fmt.Errorf("node: gossipsub: %w", err)
			}
		}
		opts, err := cfg.Election.options(n)
		if err != nil {
			return err
		}
		r, err := election.NewRunner(n.h, ps, cfg.Domain, duties{n}, opts...)
		if err != nil {
			return &ConfigError{"election", err}
		}
		if err := r.Start(); err != nil {
			return err
		}
		n.election = r
		n.watchElection(r)
	}
	if cfg.SIP != nil {
		s := cfg.SIP
		opts := []sipbridge.Option{sipbridge.WithLogger(n.log), sipbridge.WithInterDomain(n.nextHop),
			sipbridge.WithMembership(n.IsMember), sipbridge.WithCallObserver(n.cfg.Metrics.CallRouted)}
		udp, tcp := s.UDP, s.TCP
		if udp == "" && tcp == "" {
			udp, tcp = DefaultSIPListen, DefaultSIPListen
		}
		opts = append(opts, sipbridge.WithUDP(udp), sipbridge.WithTCP(tcp))
		if s.UsersFile != "" {
			u, err := sipbridge.LoadUsers(s.UsersFile)
			if err != nil {
				return &ConfigError{"sip.users_file", err}
			}
			n.users = u
			opts = append(opts, sipbridge.WithUsers(u))
		}
		if s.MinExpires != 0 || s.DefaultExpires != 0 || s.MaxExpires != 0 {
			opts = append(opts, sipbridge.WithExpires(s.MinExpires, s.DefaultExpires, s.MaxExpires))
		}
		if s.Limits != nil {
			opts = append(opts, sipbridge.WithLimits(*s.Limits))
		}
		if s.Advertise != "" {
			opts = append(opts, sipbridge.WithAdvertise(s.Advertise))
		}
		switch {
		case s.NATKeepalive < 0:
			opts = append(opts, sipbridge.WithNATKeepalive(0))
		case s.NATKeepalive > 0:
			opts = append(opts, sipbridge.WithNATKeepalive(s.NATKeepalive))
		}
		if cfg.DataDir != "" {
			// The registrar's contacts survive a restart (also a crash).
			opts = append(opts, sipbridge.WithRegistrationStore(filepath.Join(cfg.DataDir, RegistrationsFile)))
		}
		mopts, err := n.startMedia(s, udp, tcp)
		if err != nil {
			return err
		}
		b, err := sipbridge.New(n.h, n, append(append(opts, mopts...), s.Options...)...)
		if err != nil {
			return errors.Join(bridgeError(err), n.stopMedia())
		}
		n.bridge = b
		if n.users == nil {
			n.warnOpenSIP(b)
		}
	}
	return nil
}

// warnOpenSIP warns when the bridge listens beyond loopback without a users
// file: anyone who reaches the port can register any name of the domain and
// call through the node.
func (n *Node) warnOpenSIP(b *sipbridge.Bridge) {
	var open []string
	for _, a := range []string{b.UDPAddr(), b.TCPAddr()} {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			open = append(open, a)
		}
	}
	if len(open) > 0 {
		n.log.Warn("SIP listens beyond loopback without a users file: anyone who reaches it can register any user of the domain and call through this node; set sip.users_file (hiersip users add)",
			"addrs", open)
	}
}

// ErrNoUsersFile is returned by ReloadUsers on a node started without a
// users file.
var ErrNoUsersFile = errors.New("node: no users file (digest authentication is off; turning it on needs a restart)")

// ReloadUsers reads the users file (SIPConfig.UsersFile) again and makes
// its users the ones the SIP bridge authenticates, without a restart (the
// daemon does it on SIGHUP). On a malformed or unreadable file the users stay
// as they were. It returns the number of users.
func (n *Node) ReloadUsers() (int, error) {
	if n.users == nil {
		return 0, ErrNoUsersFile
	}
	u, err := sipbridge.LoadUsers(n.cfg.SIP.UsersFile)
	if err != nil {
		return 0, &ConfigError{"sip.users_file", err}
	}
	keys, err := loadUserKeys(n.cfg.SIP.UsersFile)
	if err != nil {
		return 0, &ConfigError{"sip.users_file", err}
	}
	n.users.Replace(u)
	n.userKeys.Store(&keys) // a user given a key signs her bindings from the next registration on
	return u.Len(), nil
}

// bridgeError names the setting behind a failed sipbridge.New: a listen
// error (a busy port) is sip.udp's or sip.tcp's.
func bridgeError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "listen" {
		switch op.Net {
		case "udp", "udp4", "udp6":
			return &ConfigError{"sip.udp", err}
		case "tcp", "tcp4", "tcp6":
			return &ConfigError{"sip.tcp", err}
		}
	}
	return &ConfigError{"sip", err}
}

// stopServices hands the proxy role over (Runner.Close) and stops the bridge.
func (n *Node) stopServices() error {
	var errs []error
	if n.election != nil {
		if err := n.election.Close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	if n.bridge != nil {
		errs = append(errs, n.bridge.Close())
	}
	errs = append(errs, n.stopMedia())
	return errors.Join(errs...)
}

// Election returns the node's election runner, nil when disabled.
func (n *Node) Election() *election.Runner { return n.election }

// Bridge returns the node's SIP bridge, nil when Config.SIP is nil.
func (n *Node) Bridge() *sipbridge.Bridge { return n.bridge }

// duties performs a proxy's duties for the election runner.
type duties struct{ n *Node }

func (d duties) Promote(ctx context.Context, epoch uint64) error {
	var proxies []peer.ID
	if r := d.n.election; r != nil {
		for _, m := range r.State().Proxies {
			proxies = append(proxies, m.ID)
		}
	}
	return d.n.BecomeProxy(ctx, epoch, proxies)
}

func (d duties) Demote(context.Context) error { return d.n.StepDown() }

// nextHop is the SIP bridge's route for a target outside the node's domain:
// a proxy sends it to a proxy of the target's domain, found in the global
// overlay (draft Figure 3, F5–F7); any other node sends it to its own
// domain's proxy (F1–F3). The first proxy that can be reached is chosen; a
// proxy with a stale cache looks the domain up again before it gives up.
func (n *Node) nextHop(ctx context.Context, target domains.AOR) (peer.AddrInfo, error) {
	if n.IsProxy() {
		known := false // the domain had proxies a moment ago (cached record)
		for attempt := 0; attempt < 2; attempt++ {
			dom, proxies, err := n.RemoteProxies(ctx, target.Host)
			if err != nil {
				if known && errors.Is(err, ErrUnknownDomain) {
					// Its proxies held the only copies of its record and are gone:
					// the domain is down, not unknown.
					return peer.AddrInfo{}, fmt.Errorf("%w: every proxy of the domain of %s is unreachable", ErrNoProxy, target.Host)
				}
				return peer.AddrInfo{}, err
			}
			known = len(proxies) > 0
			if p, ok := n.firstReachable(ctx, proxies); ok {
				return p, nil
			}
			n.Forget(target.Host)
			n.log.Info("no proxy of the target domain reachable", "target_domain", dom, "proxies", len(proxies))
		}
		return peer.AddrInfo{}, fmt.Errorf("%w: every proxy of the domain of %s is unreachable", ErrNoProxy, target.Host)
	}
	var proxies []peer.AddrInfo
	if r := n.election; r != nil {
		start := time.Now()
		for _, m := range r.State().Proxies {
			if m.ID != n.ID() {
				proxies = append(proxies, n.h.Peerstore().PeerInfo(m.ID))
			}
		}
		if len(proxies) > 0 {
			n.traceLookup(start, overlayDomain, "proxy", overlayURI(n.cfg.Domain), SourceElection, proxyIDs(proxies), nil)
		}
	}
	if len(proxies) == 0 {
		var err error
		if proxies, err = n.OwnProxies(ctx); err != nil {
			return peer.AddrInfo{}, err
		}
	}
	if p, ok := n.firstReachable(ctx, proxies); ok {
		return p, nil
	}
	return peer.AddrInfo{}, fmt.Errorf("%w: the proxies of %s are unreachable", ErrNoProxy, n.cfg.Domain)
}

// ProxyDialTimeout bounds a connection attempt to a proxy when routing.
const ProxyDialTimeout = 2 * time.Second

// firstReachable returns the first of ps the host is connected to or can
// connect to.
func (n *Node) firstReachable(ctx context.Context, ps []peer.AddrInfo) (peer.AddrInfo, bool) {
	for _, p := range ps {
		if p.ID == n.ID() {
			continue
		}
		if n.h.Network().Connectedness(p.ID) == network.Connected {
			return p, true
		}
	}
	for _, p := range ps {
		if p.ID == n.ID() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, ProxyDialTimeout)
		err := n.h.Connect(network.WithAllowLimitedConn(cctx, "sip"), p)
		cancel()
		if err == nil {
			return p, true
		}
		n.log.Debug("proxy unreachable", "proxy", p.ID, "err", err)
	}
	return peer.AddrInfo{}, false
}
