package sipdns

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

// Policy says which domains a proxy may route to by DNS, where some of them
// go instead, and which addresses the DNS may send it to. The zero value
// (and a nil *Policy) allows everything.
//
// Domain rules match by suffix at a label boundary: "example.com" matches
// example.com and sip.example.com, not badexample.com; "." matches every
// domain. The longest matching suffix among Allow and Deny decides; on a tie
// Deny wins. A domain no rule matches is allowed when Allow is empty and
// refused otherwise (a non-empty Allow is an allow-list).
//
// Routes send a domain suffix to a fixed next hop (a SIP URI such as
// "sip:trunk.example.net;transport=tls") that is resolved instead of the
// domain itself; the longest matching suffix wins. The domain rules are
// checked first, on the request's domain.
//
// DenyAddrs refuses targets whose address falls in one of the prefixes:
// a public proxy lists loopback, private and link-local ranges so that a
// domain's DNS cannot point it at services on its own host or network.
type Policy struct {
	Allow     []string
	Deny      []string
	Routes    map[string]string
	DenyAddrs []netip.Prefix
}

// DenyInternal are the prefixes a proxy on the Internet would put in
// DenyAddrs: loopback, unspecified, RFC 1918 and unique-local, link-local,
// shared address space, multicast.
var DenyInternal = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// Validate checks the rules: every suffix a DNS name (or "."), every route
// a sip: or sips: URI.
func (p *Policy) Validate() error {
	if p == nil {
		return nil
	}
	for field, list := range map[string][]string{"allow": p.Allow, "deny": p.Deny} {
		for _, s := range list {
			if err := checkSuffix(s); err != nil {
				return fmt.Errorf("%w: %s: %q: %v", ErrConfig, field, s, err)
			}
		}
	}
	for s, uri := range p.Routes {
		if err := checkSuffix(s); err != nil {
			return fmt.Errorf("%w: routes: %q: %v", ErrConfig, s, err)
		}
		var u sip.Uri
		if err := sip.ParseUri(uri, &u); err != nil {
			return fmt.Errorf("%w: routes: %q: %q: %v", ErrConfig, s, uri, err)
		}
		if sc := strings.ToLower(u.Scheme); (sc != "sip" && sc != "sips") || u.Host == "" {
			return fmt.Errorf("%w: routes: %q: %q is not a sip: or sips: URI", ErrConfig, s, uri)
		}
	}
	for _, pf := range p.DenyAddrs {
		if !pf.IsValid() {
			return fmt.Errorf("%w: deny_addrs: invalid prefix", ErrConfig)
		}
	}
	return nil
}

func checkSuffix(s string) error {
	s = normSuffix(s)
	if s == "." {
		return nil
	}
	if s == "" {
		return fmt.Errorf("empty")
	}
	if _, ok := dns.IsDomainName(s); !ok {
		return fmt.Errorf("not a domain name")
	}
	return nil
}

func normSuffix(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "." || s == "*" {
		return "."
	}
	return strings.TrimSuffix(strings.TrimPrefix(s, "*."), ".")
}

// matchLen returns the length of suffix when it matches domain at a label
// boundary, else -1. "." matches everything with length 0.
func matchLen(domain, suffix string) int {
	suffix = normSuffix(suffix)
	switch {
	case suffix == ".":
		return 0
	case domain == suffix:
		return len(suffix)
	case strings.HasSuffix(domain, "."+suffix):
		return len(suffix)
	}
	return -1
}

// CheckDomain returns nil when the policy lets the proxy route to domain, or
// an error wrapping ErrDenied that names the rule.
func (p *Policy) CheckDomain(domain string) error {
	if p == nil {
		return nil
	}
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	bestAllow := -1
	for _, s := range p.Allow {
		if n := matchLen(domain, s); n > bestAllow {
			bestAllow = n
		}
	}
	bestDeny, denyRule := -1, ""
	for _, s := range p.Deny {
		if n := matchLen(domain, s); n > bestDeny {
			bestDeny, denyRule = n, s
		}
	}
	switch {
	case bestDeny >= 0 && bestDeny >= bestAllow:
		return fmt.Errorf("%w: domain %s (deny %q)", ErrDenied, domain, denyRule)
	case bestAllow >= 0:
		return nil
	case len(p.Allow) > 0:
		return fmt.Errorf("%w: domain %s is not in the allow list", ErrDenied, domain)
	}
	return nil
}

// Route returns the next-hop URI configured for domain, or "".
func (p *Policy) Route(domain string) string {
	if p == nil {
		return ""
	}
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	best, uri := -1, ""
	for s, u := range p.Routes {
		if n := matchLen(domain, s); n > best || (n == best && n >= 0 && u < uri) {
			best, uri = n, u
		}
	}
	return uri
}

// CheckAddr returns nil when the policy lets the proxy send to a, or an
// error wrapping ErrDenied.
func (p *Policy) CheckAddr(a netip.Addr) error {
	if p == nil {
		return nil
	}
	a = a.Unmap()
	for _, pf := range p.DenyAddrs {
		if pf.Contains(a) {
			return fmt.Errorf("%w: address %s (in %s)", ErrDenied, a, pf)
		}
	}
	return nil
}
