package sipdns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Bounds on what one DNS answer may add to a resolution.
const (
	maxRRs       = 32 // records kept from one answer
	maxNAPTR     = 8  // NAPTR records followed
	maxAddrsHost = 8  // addresses used per host name
)

// Target is one place to send a request: a transport and an address, with
// the host name it came from. Resolve returns them in the order to try.
type Target struct {
	// Transport is "udp", "tcp" or "tls".
	Transport string
	// Host is the name the address was found for (an SRV target, or the
	// URI's host), without the final dot; an IP literal when the URI held
	// one.
	Host string
	// Addr is the IP address and port to send to.
	Addr netip.AddrPort
	// Domain is the host of the URI that was resolved: the identity a TLS
	// server must prove (RFC 5922 §4: the SIP domain, not the SRV target).
	Domain string
}

// String returns e.g. "tls sip1.example.test 192.0.2.1:5061".
func (t Target) String() string { return t.Transport + " " + t.Host + " " + t.Addr.String() }

// Resolver finds the SIP servers of a URI as RFC 3263 §4 says. It is safe
// for concurrent use.
type Resolver struct {
	cfg    config
	udp    *dns.Client
	tcp    *dns.Client
	cache  *cache
	sf     singleflight.Group
	closed atomic.Bool
}

// New returns a Resolver. Without WithServers it asks the nameservers of
// /etc/resolv.conf.
func New(opts ...Option) (*Resolver, error) {
	cfg := defaults()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Resolver{
		cfg:   cfg,
		udp:   &dns.Client{Net: "udp", Timeout: cfg.timeout, UDPSize: 1232},
		tcp:   &dns.Client{Net: "tcp", Timeout: cfg.timeout},
		cache: newCache(cfg.cacheSize),
	}, nil
}

// Close ends the resolver; later calls of Resolve fail with ErrClosed. A
// second Close returns ErrClosed.
func (r *Resolver) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	r.cache.flush()
	return nil
}

// Servers returns the DNS servers the resolver asks.
func (r *Resolver) Servers() []string { return slices.Clone(r.cfg.servers) }

// Stats returns the cache's counters.
func (r *Resolver) Stats() CacheStats { return r.cache.stats() }

// Flush empties the cache.
func (r *Resolver) Flush() { r.cache.flush() }

// Resolve parses uri (a sip: or sips: URI) and resolves it; see ResolveURI.
func (r *Resolver) Resolve(ctx context.Context, uri string) ([]Target, error) {
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrBadURI, uri, err)
	}
	return r.ResolveURI(ctx, &u)
}

// ResolveURI returns the targets for u in the order a client tries them,
// failing over to the next when one does not answer (RFC 3263 §4):
//
//   - the host is the maddr parameter if present, else the URI's host;
//   - a numeric IP is used as is, with the URI's port or the transport's
//     default (5060, 5061 for TLS); the transport is the transport
//     parameter, else UDP for sip: and TLS for sips:;
//   - a name with a port: its A/AAAA records, with that port;
//   - a name with a transport parameter and no port: the SRV records of that
//     transport (_sip._udp, _sip._tcp, _sips._tcp), else A/AAAA;
//   - a name with neither: its NAPTR records (SIP+D2U, SIP+D2T, SIPS+D2T;
//     only SIPS+ for sips:) in order and preference, skipping transports
//     the client does not support, each followed to its SRV records; with
//     no usable NAPTR, the SRV records of every supported transport in the
//     client's order (_sips._tcp only for sips:); with none, A/AAAA with
//     the default port and transport.
//
// SRV records are ordered by priority and, within one, by weighted random
// choice (RFC 2782). Answers are cached for their TTL. A domain the DNS says
// does not exist fails with ErrNXDomain; see the package's errors for the
// rest, and StatusCode for the SIP answer each calls for.
func (r *Resolver) ResolveURI(ctx context.Context, u *sip.Uri) ([]Target, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	if u == nil {
		return nil, fmt.Errorf("%w: nil URI", ErrBadURI)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "sip" && scheme != "sips" {
		return nil, fmt.Errorf("%w: %q", errScheme, u.Scheme)
	}
	domain := hostOf(u.Host)
	if domain == "" {
		return nil, fmt.Errorf("%w: no host", ErrBadURI)
	}
	if _, err := netip.ParseAddr(domain); err != nil {
		if err := r.cfg.policy.CheckDomain(domain); err != nil {
			return nil, err
		}
		if route := r.cfg.policy.Route(domain); route != "" {
			var ru sip.Uri
			if err := sip.ParseUri(route, &ru); err != nil {
				return nil, fmt.Errorf("%w: route for %s: %v", ErrConfig, domain, err)
			}
			r.cfg.log.Debug("sipdns: route", "domain", domain, "via", route)
			ts, err := r.resolve(ctx, &ru)
			for i := range ts {
				ts[i].Domain = hostOf(ru.Host)
			}
			return ts, err
		}
	}
	return r.resolve(ctx, u)
}

// hostOf returns a URI host lower-cased, without IPv6 brackets or a final dot.
func hostOf(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(h, ".")
}

// hop is a transport, host and port still to be turned into addresses.
type hop struct {
	transport string
	host      string // without the final dot
	port      uint16
}

// outcome gathers why hops gave no targets.
type outcome struct {
	nx        bool // the URI's host does not exist
	tempErr   error
	deniedErr error
}

func (r *Resolver) resolve(ctx context.Context, u *sip.Uri) ([]Target, error) {
	secure := strings.EqualFold(u.Scheme, "sips")
	domain := hostOf(u.Host)
	host := domain
	if m, ok := u.UriParams.Get("maddr"); ok && hostOf(m) != "" {
		host = hostOf(m)
	}
	transport := ""
	if t, ok := u.UriParams.Get("transport"); ok {
		var err error
		if transport, err = r.transportParam(t, secure); err != nil {
			return nil, err
		}
	}
	if secure && !slices.Contains(r.cfg.transports, TLS) {
		return nil, fmt.Errorf("%w: sips: needs tls, which is not enabled", ErrNoTransport)
	}
	if u.Port < 0 || u.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d", ErrBadURI, u.Port)
	}
	port := uint16(u.Port)
	var hops []hop
	var out outcome
	ip, ipErr := netip.ParseAddr(host)
	switch {
	case ipErr == nil:
		// §4.1/4.2: a numeric IP: no DNS at all.
		if transport == "" {
			transport = r.defaultTransport(secure)
		}
		if port == 0 {
			port = defaultPort(transport)
		}
		t := Target{Transport: transport, Host: ip.String(), Addr: netip.AddrPortFrom(ip, port), Domain: domain}
		if err := r.cfg.policy.CheckAddr(ip); err != nil {
			return nil, err
		}
		return []Target{t}, nil
	case port != 0:
		// A name with a port: A/AAAA only.
		if transport == "" {
			transport = r.defaultTransport(secure)
		}
		hops = []hop{{transport, host, port}}
	case transport != "":
		// A transport and no port: that transport's SRV, else A/AAAA.
		hs, err := r.srvHops(ctx, srvName(transport, host), transport, &out)
		if err != nil {
			return nil, err
		}
		hops = hs
		if len(hops) == 0 && !out.nx {
			hops = []hop{{transport, host, defaultPort(transport)}}
		}
	default:
		hs, err := r.naptrHops(ctx, host, secure, &out)
		if err != nil {
			return nil, err
		}
		hops = hs
		if len(hops) == 0 && !out.nx {
			for _, t := range r.cfg.transports {
				if secure && t != TLS {
					continue
				}
				hs, err := r.srvHops(ctx, srvName(t, host), t, &out)
				if err != nil {
					return nil, err
				}
				hops = append(hops, hs...)
				if out.nx {
					break
				}
			}
		}
		if len(hops) == 0 && !out.nx {
			t := r.defaultTransport(secure)
			hops = []hop{{t, host, defaultPort(t)}}
		}
	}
	if out.nx {
		return nil, fmt.Errorf("%w: %s", ErrNXDomain, host)
	}
	targets, err := r.addrs(ctx, hops, host, domain, &out)
	if err != nil {
		return nil, err
	}
	if len(targets) > 0 {
		return targets, nil
	}
	switch {
	case out.nx:
		return nil, fmt.Errorf("%w: %s", ErrNXDomain, host)
	case out.tempErr != nil:
		return nil, out.tempErr
	case out.deniedErr != nil:
		return nil, out.deniedErr
	}
	return nil, fmt.Errorf("%w: %s", ErrNoTargets, host)
}

func (r *Resolver) transportParam(t string, secure bool) (string, error) {
	t = strings.ToLower(t)
	switch t {
	case UDP:
		if secure {
			return "", fmt.Errorf("%w: sips: with transport=udp", ErrBadURI)
		}
	case TCP:
		if secure {
			t = TLS
		}
	case TLS:
	default:
		return "", fmt.Errorf("%w: %s", ErrNoTransport, t)
	}
	if !slices.Contains(r.cfg.transports, t) {
		return "", fmt.Errorf("%w: %s is not enabled", ErrNoTransport, t)
	}
	return t, nil
}

// defaultTransport: UDP for sip: (TCP if UDP is off), TLS for sips:.
func (r *Resolver) defaultTransport(secure bool) string {
	if secure {
		return TLS
	}
	if slices.Contains(r.cfg.transports, UDP) || !slices.Contains(r.cfg.transports, TCP) {
		return UDP
	}
	return TCP
}

func defaultPort(transport string) uint16 {
	if transport == TLS {
		return 5061
	}
	return 5060
}

func srvName(transport, host string) string {
	switch {
	case transport == TLS:
		return "_sips._tcp." + host
	case transport == TCP:
		return "_sip._tcp." + host
	default:
		return "_sip._udp." + host
	}
}

// naptrHops follows the host's NAPTR records to SRV hops.
func (r *Resolver) naptrHops(ctx context.Context, host string, secure bool, out *outcome) ([]hop, error) {
	ans, err := r.lookup(ctx, host, dns.TypeNAPTR)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			out.tempErr = err
			return nil, nil // go on to SRV and A, as if there were none
		}
		return nil, err
	}
	if ans.nx {
		out.nx = true
		return nil, nil
	}
	var recs []*dns.NAPTR
	for _, rr := range ans.rrs {
		n, ok := rr.(*dns.NAPTR)
		if !ok || !strings.EqualFold(n.Flags, "s") || n.Replacement == "." || n.Replacement == "" {
			continue
		}
		t := naptrTransport(n.Service, secure)
		if t == "" || !slices.Contains(r.cfg.transports, t) {
			continue
		}
		recs = append(recs, n)
	}
	slices.SortStableFunc(recs, func(a, b *dns.NAPTR) int {
		if a.Order != b.Order {
			return int(a.Order) - int(b.Order)
		}
		return int(a.Preference) - int(b.Preference)
	})
	if len(recs) > maxNAPTR {
		recs = recs[:maxNAPTR]
	}
	var hops []hop
	for _, n := range recs {
		t := naptrTransport(n.Service, secure)
		sub := outcome{}
		hs, err := r.srvHops(ctx, strings.TrimSuffix(strings.ToLower(n.Replacement), "."), t, &sub)
		if err != nil {
			return nil, err
		}
		if sub.tempErr != nil {
			out.tempErr = sub.tempErr
		}
		hops = append(hops, hs...)
	}
	r.cfg.log.Debug("sipdns: NAPTR", "host", host, "records", len(recs), "hops", len(hops))
	return hops, nil
}

// naptrTransport maps a NAPTR service field to a transport ("" when it is
// not one this package uses).
func naptrTransport(service string, secure bool) string {
	switch strings.ToUpper(service) {
	case "SIP+D2U":
		if !secure {
			return UDP
		}
	case "SIP+D2T":
		if !secure {
			return TCP
		}
	case "SIPS+D2T":
		return TLS
	}
	return ""
}

// srvHops looks name's SRV records up and orders them. An NXDOMAIN for the
// SRV name says nothing about the host itself (RFC 8020 would allow it, but
// many zones get empty non-terminals wrong): it is no records.
func (r *Resolver) srvHops(ctx context.Context, name, transport string, out *outcome) ([]hop, error) {
	ans, err := r.lookup(ctx, name, dns.TypeSRV)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			out.tempErr = err
			return nil, nil
		}
		return nil, err
	}
	srvs := make([]*dns.SRV, 0, len(ans.rrs))
	for _, rr := range ans.rrs {
		if s, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, s)
		}
	}
	var hops []hop
	for _, s := range orderSRV(srvs, r.cfg.randN) {
		if s.Port == 0 {
			continue
		}
		hops = append(hops, hop{transport, strings.TrimSuffix(strings.ToLower(s.Target), "."), s.Port})
	}
	return hops, nil
}

// addrs turns hops into targets, in order, without duplicates.
func (r *Resolver) addrs(ctx context.Context, hops []hop, uriHost, domain string, out *outcome) ([]Target, error) {
	var ts []Target
	type seenKey struct {
		t string
		a netip.AddrPort
	}
	seen := map[seenKey]bool{}
	for _, h := range hops {
		ips, nx, err := r.hostAddrs(ctx, h.host)
		if err != nil {
			if errors.Is(err, ErrUnavailable) {
				out.tempErr = err
				continue
			}
			return nil, err
		}
		if nx && h.host == uriHost {
			out.nx = true
		}
		for _, ip := range ips {
			if err := r.cfg.policy.CheckAddr(ip); err != nil {
				out.deniedErr = err
				continue
			}
			k := seenKey{h.transport, netip.AddrPortFrom(ip, h.port)}
			if seen[k] {
				continue
			}
			seen[k] = true
			ts = append(ts, Target{Transport: h.transport, Host: h.host, Addr: k.a, Domain: domain})
			if len(ts) >= r.cfg.maxTargets {
				return ts, nil
			}
		}
	}
	if len(ts) > 0 {
		out.nx = false
	}
	return ts, nil
}

// hostAddrs returns the addresses of host (A and/or AAAA), and whether the
// name does not exist.
func (r *Resolver) hostAddrs(ctx context.Context, host string) ([]netip.Addr, bool, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, false, nil
	}
	types := []uint16{}
	if r.cfg.ipv4 {
		types = append(types, dns.TypeA)
	}
	if r.cfg.ipv6 {
		types = append(types, dns.TypeAAAA)
	}
	if r.cfg.preferIPv6 {
		slices.Reverse(types)
	}
	var ips []netip.Addr
	var tempErr error
	nx := false
	for _, qt := range types {
		ans, err := r.lookup(ctx, host, qt)
		if err != nil {
			if errors.Is(err, ErrUnavailable) {
				tempErr = err
				continue
			}
			return nil, false, err
		}
		if ans.nx {
			nx = true
			break // the name does not exist: no other type either
		}
		for _, rr := range ans.rrs {
			var ip netip.Addr
			switch v := rr.(type) {
			case *dns.A:
				ip, _ = netip.AddrFromSlice(v.A.To4())
			case *dns.AAAA:
				ip, _ = netip.AddrFromSlice(v.AAAA.To16())
			}
			if ip.IsValid() && len(ips) < maxAddrsHost {
				ips = append(ips, ip)
			}
		}
	}
	if len(ips) == 0 && tempErr != nil {
		return nil, false, tempErr
	}
	return ips, nx, nil
}

// lookup answers one question from the cache or the DNS servers. Concurrent
// lookups of one question share one query.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (answer, error) {
	name = strings.ToLower(dns.Fqdn(name))
	if _, ok := dns.IsDomainName(name); !ok || len(name) > 254 {
		return answer{}, fmt.Errorf("%w: %q is not a domain name", ErrBadURI, name)
	}
	k := cacheKey{name, qtype}
	if a, ok := r.cache.get(k, r.cfg.now()); ok {
		return a, nil
	}
	if err := ctx.Err(); err != nil {
		// A caller that gave up starts no query (below, a fast answer could win the race
		// with its ctx).
		return answer{}, fmt.Errorf("%w: %s %s: %v", ErrUnavailable, dns.TypeToString[qtype], name, err)
	}
	ch := r.sf.DoChan(name+"/"+strconv.Itoa(int(qtype)), func() (any, error) {
		// The query outlives a caller that gives up, for the others.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx),
			r.cfg.timeout*time.Duration(r.cfg.attempts*len(r.cfg.servers)))
		defer cancel()
		return r.query(qctx, k)
	})
	select {
	case <-ctx.Done():
		return answer{}, fmt.Errorf("%w: %s %s: %v", ErrUnavailable, dns.TypeToString[qtype], name, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return answer{}, res.Err
		}
		return res.Val.(answer), nil
	}
}

// query asks the servers in turn, over UDP and then TCP when the answer is
// truncated, and caches what they say.
func (r *Resolver) query(ctx context.Context, k cacheKey) (answer, error) {
	var last error
	for range r.cfg.attempts {
		for _, srv := range r.cfg.servers {
			m := new(dns.Msg)
			m.SetQuestion(k.name, k.qtype)
			m.SetEdns0(1232, false)
			start := time.Now()
			resp, _, err := r.udp.ExchangeContext(ctx, m, srv)
			if err == nil && resp.Truncated {
				resp, _, err = r.tcp.ExchangeContext(ctx, m, srv)
			}
			if err != nil {
				last = fmt.Errorf("%w: %s %s at %s: %v", ErrUnavailable, dns.TypeToString[k.qtype], k.name, srv, err)
				if ctx.Err() != nil {
					return answer{}, last
				}
				continue
			}
			if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, k.name) || resp.Question[0].Qtype != k.qtype {
				last = fmt.Errorf("%w: %s %s at %s: answer to another question", ErrUnavailable, dns.TypeToString[k.qtype], k.name, srv)
				continue
			}
			var a answer
			switch resp.Rcode {
			case dns.RcodeSuccess:
			case dns.RcodeNameError:
				a.nx = true
			default:
				last = fmt.Errorf("%w: %s %s at %s: %s", ErrUnavailable, dns.TypeToString[k.qtype], k.name, srv, dns.RcodeToString[resp.Rcode])
				continue
			}
			ttl := uint32(0)
			first := true
			for _, rr := range resp.Answer {
				if rr.Header().Rrtype != k.qtype || len(a.rrs) >= maxRRs {
					continue
				}
				a.rrs = append(a.rrs, rr)
				if first || rr.Header().Ttl < ttl {
					ttl, first = rr.Header().Ttl, false
				}
			}
			if len(a.rrs) == 0 {
				a.rrs = nil
				ttl = uint32(r.cfg.negTTL / time.Second)
				for _, rr := range resp.Ns {
					if soa, ok := rr.(*dns.SOA); ok {
						ttl = min(soa.Hdr.Ttl, soa.Minttl)
					}
				}
			}
			d := min(time.Duration(ttl)*time.Second, r.cfg.maxTTL)
			r.cfg.log.Debug("sipdns: query", "name", k.name, "type", dns.TypeToString[k.qtype],
				"records", len(a.rrs), "nxdomain", a.nx, "ttl", d, "server", srv, "rtt", time.Since(start))
			if d > 0 {
				r.cache.put(k, a, r.cfg.now().Add(d))
			}
			return a, nil
		}
	}
	if last == nil {
		last = fmt.Errorf("%w: no server answered", ErrUnavailable)
	}
	return answer{}, last
}
