package node

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/hiersip/hiersip/internal/hostport"
	"github.com/hiersip/hiersip/sipbridge"
)

// SIPConfig configures the node's SIP bridge: the registrar and outbound
// proxy of its local user agents, and SIP routing between nodes.
type SIPConfig struct {
	// UDP and TCP are the UA-facing listen addresses (host:port; port 0
	// picks a free port). Both empty: DefaultSIPListen for both.
	UDP, TCP string
	// UsersFile, when set, turns on digest authentication of local UAs and
	// gives their user keys (see LoadUsers). The node reads it once, at
	// start.
	UsersFile string
	// Users, when set, are the users of an already loaded users file
	// (LoadUsers), instead of UsersFile: the daemon reads the file once to
	// check and to use it, and swaps them at a reload (Users.Replace).
	Users *Users
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

// validate checks c, naming the setting at fault.
func (c *SIPConfig) validate() error {
	for _, a := range []struct{ field, addr string }{{"sip.udp", c.UDP}, {"sip.tcp", c.TCP}} {
		if err := checkHostPort(a.field, a.addr); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"sip.min_expires", c.MinExpires}, {"sip.default_expires", c.DefaultExpires}, {"sip.max_expires", c.MaxExpires}} {
		if d.v < 0 {
			return &ConfigError{d.field, fmt.Errorf("%v is negative", d.v)}
		}
	}
	if mn, mx := c.MinExpires, c.MaxExpires; mn != 0 && mx != 0 && mn > mx {
		return &ConfigError{"sip.max_expires", fmt.Errorf("%v is below sip.min_expires %v", mx, mn)}
	}
	if d := c.DefaultExpires; d != 0 && (d < c.MinExpires || (c.MaxExpires != 0 && d > c.MaxExpires)) {
		return &ConfigError{"sip.default_expires", fmt.Errorf("%v is outside [sip.min_expires, sip.max_expires]", d)}
	}
	if err := sipbridge.ValidateAdvertise(c.Advertise); err != nil {
		return &ConfigError{"sip.advertise", err}
	}
	if c.Limits != nil {
		if err := c.Limits.Validate(); err != nil {
			return &ConfigError{"sip.limits", err}
		}
	}
	return nil
}

// checkHostPort checks a host:port listen address ("" is none).
func checkHostPort(field, addr string) error {
	if err := hostport.Check(addr); err != nil {
		return &ConfigError{field, err}
	}
	return nil
}

// listen returns the UA-facing listen addresses: DefaultSIPListen for both
// when neither is set.
func (c *SIPConfig) listen() (udp, tcp string) {
	if c.UDP == "" && c.TCP == "" {
		return DefaultSIPListen, DefaultSIPListen
	}
	return c.UDP, c.TCP
}

// startBridge starts the node's SIP bridge (and its media relay), with the
// locator as its location service and the router as its route out of the
// domain.
func (n *Node) startBridge() error {
	s := n.cfg.SIP
	udp, tcp := s.listen()
	opts := []sipbridge.Option{sipbridge.WithLogger(n.log), sipbridge.WithClock(n.cfg.Clock), sipbridge.WithInterDomain(n.router.nextHop),
		sipbridge.WithMembership(n.isMember), sipbridge.WithCallObserver(n.cfg.Metrics.callRouted),
		sipbridge.WithUDP(udp), sipbridge.WithTCP(tcp)}
	if n.users != nil {
		opts = append(opts, sipbridge.WithUsers(n.users.digest))
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
	if n.cfg.DataDir != "" {
		// The registrar's contacts survive a restart (also a crash).
		opts = append(opts, sipbridge.WithRegistrationStore(filepath.Join(n.cfg.DataDir, RegistrationsFile)))
	}
	mopts, err := n.startMedia(udp, tcp)
	if err != nil {
		return err
	}
	bopts, err := n.startMailbox() // mailbox.go
	if err != nil {
		return errors.Join(err, n.stopMedia())
	}
	mopts = append(mopts, bopts...)
	popts, err := n.startPush() // push.go
	if err != nil {
		return errors.Join(err, n.stopMedia())
	}
	mopts = append(mopts, popts...)
	b, err := sipbridge.New(n.h, n.locator, append(append(opts, mopts...), s.Options...)...)
	if err != nil {
		return errors.Join(bridgeError(err), n.stopMedia())
	}
	n.bridge = b
	if n.users == nil {
		n.warnOpenSIP(b)
	}
	return nil
}

// Bridge returns the node's SIP bridge, nil when Config.SIP is nil.
func (n *Node) Bridge() *sipbridge.Bridge { return n.bridge }

// warnOpenSIP warns when the bridge listens beyond loopback without a users
// file: anyone who reaches the port can register any name of the domain and
// call through the node.
func (n *Node) warnOpenSIP(b *sipbridge.Bridge) {
	var open []string
	for _, a := range []string{b.UDPAddr(), b.TCPAddr(), b.TLSAddr(), b.WSAddr(), b.WSSAddr()} {
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

// bridgeError names the setting behind a failed sipbridge.New: a listen
// error (a busy port) is sip.udp's or sip.tcp's.
func bridgeError(err error) error {
	var le *sipbridge.ListenError
	if errors.As(err, &le) {
		return &ConfigError{"sip." + le.Transport, err} // sip.tls, sip.ws, sip.wss
	}
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
