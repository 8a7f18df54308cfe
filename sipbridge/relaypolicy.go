package sipbridge

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Who the node relays for, and where it sends.
//
// A node without users (no WithUsers) cannot tell its user agents from anyone else who
// reaches its UA-facing listeners: it serves only user agents on loopback or on a network
// given with WithTrustedNetworks. Everything else is answered 403 ("Forbidden: this node
// serves only user agents on trusted networks"), REGISTER included, and the node says so
// in a log line when it starts.
//
// Whatever the source, the node sends SIP over UDP/TCP only to its own user agents: a
// contact registered at it, or the Contact a local UA used in a request it sent through the
// node from that same IP address (a UA cannot name another host as itself), or the Contact
// of a response a local UA sent. Everything else goes into the overlay (libp2p, to the node
// serving the AOR). A request whose next hop would be any other address (a Request-URI or a
// Route naming a host and port) is answered 403 "Forbidden: not a user agent of this node";
// the node is no open relay and no reflector.

// WithTrustedNetworks sets the networks whose user agents a node without users serves
// (loopback is always trusted). It has no effect with WithUsers, where digest credentials
// decide.
func WithTrustedNetworks(prefixes ...netip.Prefix) Option {
	return func(c *config) error {
		for _, p := range prefixes {
			if !p.IsValid() {
				return fmt.Errorf("%w: invalid trusted network %v", ErrBadOption, p)
			}
			c.trusted = append(c.trusted, p.Masked())
		}
		return nil
	}
}

// ParseTrustedNetworks parses CIDR prefixes ("192.168.1.0/24", "2001:db8::/32") or single
// addresses for WithTrustedNetworks; an error names the first invalid one.
func ParseTrustedNetworks(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%w: trusted network %q: want a CIDR prefix or an address", ErrBadOption, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// trustedSource reports whether a UA at addr ("ip:port") may use a node without users.
func (b *Bridge) trustedSource(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true
	}
	for _, p := range b.cfg.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

const untrustedReason = "Forbidden: this node serves only user agents on trusted networks"

// refuseUntrusted answers a request from an untrusted UA of a node without users; nil
// when the request may go on.
func (b *Bridge) refuseUntrusted(req *sip.Request) *sip.Response {
	if b.cfg.users != nil || b.trustedSource(req.Source()) {
		return nil
	}
	b.lim.stats.relayRefused.Add(1)
	b.log.Info("refusing request from an untrusted user agent", "from", req.Source(), "method", string(req.Method))
	return b.newResponse(req, 403, untrustedReason)
}

// relayRefused counts and logs a request (from a UA, or from peer from) that routing
// refused to send to addr ("host:port"), an address that is no user agent of this node:
// the node sends over UDP/TCP only to its own user agents (route.go asks localUA).
func (b *Bridge) relayRefused(addr string, from peer.ID) {
	b.lim.stats.relayRefused.Add(1)
	src := "ua"
	if from != "" {
		src = from.String()
	}
	b.log.Info("refusing to relay to an address that is no user agent of this node", "to", addr, "from", src)
}

// logPolicy says at start whom the node serves.
func (b *Bridge) logPolicy() {
	if b.cfg.users != nil {
		b.log.Info("digest authentication of user agents on", "algorithms", strings.Join(b.cfg.users.algorithms(b.cfg.digestAlgs), ", "))
		return
	}
	nets := make([]string, 0, len(b.cfg.trusted))
	for _, p := range b.cfg.trusted {
		nets = append(nets, p.String())
	}
	b.log.Info("no users file: serving only user agents on loopback and trusted networks", "trusted_networks", strings.Join(nets, ", "))
}
