package sipbridge

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A node bound to a wildcard address (0.0.0.0 or [::]; Go binds both as one dual-stack
// socket) has as many addresses as its host has: a Route or Request-URI naming any of
// them, at the node's SIP port, names the node. In Via, Record-Route and Contact it
// writes one concrete address: the advertised one (WithAdvertise: a NAT'd server's public
// address, a cloud instance's floating IP, a DNS name), else the address of the interface
// a message to that destination leaves from, found by a route lookup (a connected UDP
// socket's local address, kept for a while), else the bound address.

// WithAdvertise sets the address the node writes into Via, Record-Route and Contact
// instead of its interface addresses, as Kamailio's "advertise": "host" or "host:port"
// (an IPv6 host in brackets when a port follows). Without a port the bound port is
// advertised. Requests naming this address name the node. Local user agents on the
// node's own machine (loopback destinations) are still given the loopback address.
func WithAdvertise(hostport string) Option {
	return func(c *config) error {
		h, p, err := parseAdvertise(hostport)
		if err != nil {
			return err
		}
		c.advHost, c.advPort = h, p
		return nil
	}
}

// ValidateAdvertise reports whether s is a valid WithAdvertise address ("" is none): an
// error wrapping ErrBadOption says what is wrong.
func ValidateAdvertise(s string) error {
	_, _, err := parseAdvertise(s)
	return err
}

// parseAdvertise splits "host[:port]" ("" is none).
func parseAdvertise(s string) (host string, port int, err error) {
	if s == "" {
		return "", 0, nil
	}
	host = s
	if _, perr := netip.ParseAddr(strings.Trim(s, "[]")); perr == nil && (!strings.HasPrefix(s, "[") || strings.HasSuffix(s, "]")) {
		host = strings.Trim(s, "[]") // an IP address without port (IPv6 with or without brackets)
	} else if h, ps, serr := net.SplitHostPort(s); serr == nil {
		n, perr := strconv.Atoi(ps)
		if perr != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("%w: advertise %q: port must be 1-65535", ErrBadOption, s)
		}
		host, port = h, n
	}
	if ip, perr := netip.ParseAddr(host); perr == nil {
		if ip.IsUnspecified() {
			return "", 0, fmt.Errorf("%w: advertise %q: a wildcard address cannot be reached", ErrBadOption, s)
		}
		return ip.Unmap().String(), port, nil
	}
	if !validHostname(host) {
		return "", 0, fmt.Errorf("%w: advertise %q: want host or host:port", ErrBadOption, s)
	}
	return strings.ToLower(host), port, nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// normHost is h without brackets, an IP address in its canonical form (IPv4-mapped IPv6
// as IPv4), a name lower-cased.
func normHost(h string) string {
	h = strings.Trim(h, "[]")
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Is4() {
			return h // ParseAddr takes IPv4 in canonical form only
		}
		return ip.Unmap().String()
	}
	return strings.ToLower(h)
}

// hostPort is net.JoinHostPort for a host that may carry brackets already (sipgo keeps
// them in URI hosts: "[::1]").
func hostPort(host string, port int) string {
	return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port))
}

// portOf is the port of "host:port" (0 when there is none).
func portOf(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return 0
	}
	n, _ := strconv.Atoi(addr[i+1:])
	return n
}

// addrIP parses the host of "host:port", "host" or "[v6]:port" as an IP address.
func addrIP(addr string) (netip.Addr, bool) {
	h := addr
	if hh, _, err := net.SplitHostPort(addr); err == nil {
		h = hh
	}
	ip, err := netip.ParseAddr(strings.Trim(h, "[]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

const (
	localAddrsTTL = 2 * time.Second  // a miss re-reads the interfaces at most this often
	routeTTL      = 30 * time.Second // a route lookup is reused this long
	maxRoutes     = 4096             // cached route lookups; the cache starts over when full
)

// addrBook is what the bridge knows of its own addresses.
type addrBook struct {
	udpIP, tcpIP     netip.Addr // bound addresses; invalid when the transport is off
	udpPort, tcpPort int
	advHost          string // WithAdvertise host, normalized ("" none)
	advPort          int
	// streams are the bound addresses of the TLS, WS and WSS listeners, by transport
	// ("tls", "ws", "wss"), set before the bridge serves and read-only after.
	streams map[string]netip.AddrPort

	// ifaceAddrs and routeLookup are the system's; tests replace them.
	ifaceAddrs  func() ([]net.Addr, error)
	routeLookup func(dst netip.Addr) (netip.Addr, error)

	mu      sync.Mutex
	local   map[netip.Addr]bool
	primary [2]netip.Addr // a non-loopback IPv4 and IPv6 address of the host
	localAt time.Time
	routes  map[netip.Addr]cachedRoute
}

type cachedRoute struct {
	src   netip.Addr
	until time.Time
}

func newAddrBook(udp, tcp net.Addr, advHost string, advPort int) *addrBook {
	a := &addrBook{advHost: advHost, advPort: advPort, ifaceAddrs: net.InterfaceAddrs, routeLookup: routeSource,
		routes: map[netip.Addr]cachedRoute{}}
	if u, ok := udp.(*net.UDPAddr); ok && u != nil {
		a.udpIP, a.udpPort = netipOf(u.IP), u.Port
	}
	if t, ok := tcp.(*net.TCPAddr); ok && t != nil {
		a.tcpIP, a.tcpPort = netipOf(t.IP), t.Port
	}
	return a
}

func netipOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.IPv4Unspecified()
	}
	return a.Unmap()
}

// routeSource asks the kernel which local address a datagram to dst leaves from: a
// connected UDP socket sends nothing.
func routeSource(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// refreshLocked re-reads the host's interface addresses.
func (a *addrBook) refreshLocked(now time.Time) {
	a.localAt = now
	addrs, err := a.ifaceAddrs()
	if err != nil {
		return
	}
	local := make(map[netip.Addr]bool, len(addrs))
	var primary [2]netip.Addr
	for _, ad := range addrs {
		var ip net.IP
		switch v := ad.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		default:
			continue
		}
		nip, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		nip = nip.Unmap()
		local[nip] = true
		fam := 0
		if nip.Is6() {
			fam = 1
		}
		if !primary[fam].IsValid() && nip.IsGlobalUnicast() {
			primary[fam] = nip
		}
	}
	a.local, a.primary = local, primary
}

// isLocal reports whether ip is an address of this host.
func (a *addrBook) isLocal(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.local[ip] {
		return true
	}
	if now := time.Now(); now.Sub(a.localAt) >= localAddrsTTL {
		a.refreshLocked(now)
		return a.local[ip]
	}
	return false
}

// boundTo reports whether a socket bound to bound receives what is sent to ip.
func (a *addrBook) boundTo(bound, ip netip.Addr) bool {
	if !bound.IsValid() {
		return false
	}
	if bound.IsUnspecified() {
		return a.isLocal(ip)
	}
	return bound == ip
}

// mine reports whether host:port (port 0: 5060) names this node.
func (a *addrBook) mine(host string, port int) bool {
	if port == 0 {
		port = 5060
	}
	h := normHost(host)
	if a.advHost != "" && h == a.advHost && (port == a.advPort || a.advPort == 0 && (port == a.udpPort || port == a.tcpPort)) {
		return true
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	if (port == a.udpPort && a.boundTo(a.udpIP, ip)) || (port == a.tcpPort && a.boundTo(a.tcpIP, ip)) {
		return true
	}
	for _, ap := range a.streams {
		if port == int(ap.Port()) && a.boundTo(ap.Addr(), ip) {
			return true
		}
	}
	return false
}

// mineOver is mine for an address reached over transport ("udp", "tcp", "tls", "ws",
// "wss"): only the listener of that transport counts. A phone on the node's own host may
// bind for UDP the port number of the node's TCP listener; its contact is no loop.
func (a *addrBook) mineOver(transport, host string, port int) bool {
	if port == 0 {
		port = 5060
	}
	h := normHost(host)
	if a.advHost != "" && h == a.advHost && (port == a.advPort || a.advPort == 0 && (port == a.udpPort || port == a.tcpPort)) {
		return true
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	switch transport {
	case "udp":
		return port == a.udpPort && a.boundTo(a.udpIP, ip)
	case "tcp":
		return port == a.tcpPort && a.boundTo(a.tcpIP, ip)
	}
	ap, ok := a.streams[transport]
	return ok && port == int(ap.Port()) && a.boundTo(ap.Addr(), ip)
}

// addStream records the bound address of the listener of transport ("tls", "ws", "wss").
func (a *addrBook) addStream(transport string, addr *net.TCPAddr) {
	if a.streams == nil {
		a.streams = map[string]netip.AddrPort{}
	}
	a.streams[transport] = netip.AddrPortFrom(netipOf(addr.IP), uint16(addr.Port))
}

// bound returns the bound address and port of transport ("udp" or "tcp"; the other one
// when that one is off).
func (a *addrBook) bound(transport string) (netip.Addr, int) {
	if ap, ok := a.streams[transport]; ok {
		return ap.Addr(), int(ap.Port())
	}
	if transport == "tcp" && a.tcpIP.IsValid() || !a.udpIP.IsValid() {
		return a.tcpIP, a.tcpPort
	}
	return a.udpIP, a.udpPort
}

// advertised is the host and port this node writes into a message sent over transport
// to dst ("ip:port", "ip" or "" when unknown).
func (a *addrBook) advertised(transport, dst string) (string, int) {
	ip, port := a.bound(transport)
	dip, known := addrIP(dst)
	if known && dip.IsLoopback() && (ip.IsUnspecified() || ip.IsLoopback()) {
		// A UA on the node's own machine reaches it on loopback, whatever is advertised.
		if ip.IsLoopback() {
			return ip.String(), port
		}
		if dip.Is4() {
			return "127.0.0.1", port
		}
		return "::1", port
	}
	if a.advHost != "" {
		if _, tls := a.streams[transport]; a.advPort != 0 && !tls {
			port = a.advPort
		}
		return a.advHost, port
	}
	if !ip.IsUnspecified() {
		return ip.String(), port
	}
	if known {
		if src, ok := a.routeFrom(dip); ok {
			return src.String(), port
		}
	}
	return a.primaryFor(dip).String(), port
}

// routeFrom returns the local address traffic to dst leaves from.
func (a *addrBook) routeFrom(dst netip.Addr) (netip.Addr, bool) {
	now := time.Now()
	a.mu.Lock()
	if r, ok := a.routes[dst]; ok && now.Before(r.until) {
		a.mu.Unlock()
		return r.src, true
	}
	a.mu.Unlock()
	src, err := a.routeLookup(dst)
	if err != nil || !src.IsValid() || src.IsUnspecified() {
		return netip.Addr{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.routes) >= maxRoutes {
		clear(a.routes)
	}
	a.routes[dst] = cachedRoute{src: src, until: now.Add(routeTTL)}
	return src, true
}

// primaryFor is an address of the host in dst's family (IPv4 when dst is unknown), for
// messages whose destination has no route: loopback when the host has no other.
func (a *addrBook) primaryFor(dst netip.Addr) netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.local == nil || time.Since(a.localAt) >= localAddrsTTL {
		a.refreshLocked(time.Now())
	}
	if dst.Is6() && a.primary[1].IsValid() {
		return a.primary[1]
	}
	if a.primary[0].IsValid() {
		return a.primary[0]
	}
	if a.primary[1].IsValid() {
		return a.primary[1]
	}
	if dst.Is6() {
		return netip.IPv6Loopback()
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// localList lists the host's addresses a wildcard-bound node answers on, for the logs.
func (a *addrBook) localList() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refreshLocked(time.Now())
	out := make([]string, 0, len(a.local))
	for ip := range a.local {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return out
}

// ---- the bridge's use of its addresses

// isMineOver is isMine for a contact: its transport parameter (UDP by default, TLS for
// sips:) picks the listener it is compared with.
func (b *Bridge) isMineOver(u *sip.Uri) bool {
	if id, ok := u.UriParams.Get(nodeParam); ok {
		return id == b.selfStr
	}
	tp := "udp"
	if strings.EqualFold(u.Scheme, "sips") {
		tp = "tls"
	}
	if t, ok := u.UriParams.Get("transport"); ok && t != "" {
		tp = strings.ToLower(t)
	}
	return b.addrs.mineOver(tp, u.Host, u.Port)
}

// isMine reports whether u names this node: by its hsn parameter, or by its address.
func (b *Bridge) isMine(u *sip.Uri) bool {
	if id, ok := u.UriParams.Get(nodeParam); ok {
		return id == b.selfStr
	}
	return b.addrs.mine(u.Host, u.Port)
}

// selfURI is this node's Record-Route URI for a UA reached over transport at dst: the
// address that UA reaches the node at, and the node's peer ID in the hsn parameter for
// other nodes.
func (b *Bridge) selfURI(transport, dst string) sip.Uri {
	if k := kindOf(transport); k != tpTCP && k.stream() && b.streamTP(k) != nil {
		return b.streamSelfURI(transport, dst) // transport_tls.go
	}
	if transport != "tcp" || b.tcp == nil {
		transport = "udp"
	}
	if b.udp == nil {
		transport = "tcp"
	}
	return b.routeURI(transport, dst)
}

// routeURI is the node's Record-Route URI over transport for a UA at dst: the address
// that UA reaches the node at, the transport named, lr, and the node's peer ID.
func (b *Bridge) routeURI(transport, dst string) sip.Uri {
	host, port := b.addrs.advertised(transport, dst)
	u := sip.Uri{Scheme: "sip", Host: host, Port: port}
	u.UriParams = sip.NewParams()
	u.UriParams.Add("transport", transport)
	u.UriParams.Add("lr", "")
	u.UriParams.Add(nodeParam, b.selfStr)
	return u
}

// hopDest is where a request for hop h (a UA) is sent: the address of its URI, or the
// source its registration came from when it is behind a NAT; and over which transport.
func hopDest(h hop) (dst, transport string) {
	if h.dst != "" {
		return h.dst, h.dstTransport
	}
	u := h.uri
	tp := uriTransport(u)
	port := u.Port
	if port == 0 {
		port = sip.DefaultPort(strings.ToUpper(tp))
	}
	return hostPort(u.Host, port), tp
}

// recordRoute adds this node's Record-Route to fwd, the forwarded copy of req: one naming
// the address the calling UA reaches the node at when req comes from a local UA, one for
// the called UA when h is a local UA — both when they differ (a UA on loopback calling one
// on the LAN, UDP to TCP, IPv4 to IPv6), as Kamailio's double record-routing does. The
// called UA's is on top: it uses the first, the caller the last.
func (b *Bridge) recordRoute(req, fwd *sip.Request, h hop, from peer.ID) {
	var uris []sip.Uri
	switch {
	case from == "" && b.isPublic(req):
		uris = append(uris, b.publicURI(req.Transport(), req.Source())) // public.go
	case from == "":
		uris = append(uris, b.selfURI(strings.ToLower(req.Transport()), req.Source()))
	}
	if h.uri != nil {
		dst, tp := hopDest(h)
		u := b.selfURI(tp, dst)
		if b.outPublic(h, tp) {
			u = b.publicURI("udp", dst) // outbound.go
		}
		if len(uris) == 0 || uris[0].String() != u.String() {
			uris = append(uris, u)
		}
	}
	for i := range uris {
		fwd.PrependHeader(&sip.RecordRouteHeader{Address: uris[i]})
	}
}

// shownAddr is a bound address as the configuration wrote it: Go binds "0.0.0.0:5060" as
// one dual-stack socket whose address reads "[::]:5060", which would tell an operator that
// the node serves IPv6 only.
func shownAddr(configured string, ip net.IP, port int) string {
	if ip.IsUnspecified() {
		if h, _, err := net.SplitHostPort(configured); err == nil {
			if h == "" {
				return hostPort("0.0.0.0", port)
			}
			if cip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil && cip.IsUnspecified() {
				return hostPort(cip.String(), port)
			}
		}
	}
	return hostPort(ip.String(), port)
}

// addrAttrs are the log attributes of the bridge's addresses: bound, the host's addresses
// a wildcard-bound node answers on, and what it advertises.
func (b *Bridge) addrAttrs() []any {
	attrs := []any{"udp", b.UDPAddr(), "tcp", b.TCPAddr()}
	for _, t := range []*tcpTransport{b.tls, b.ws, b.wss} {
		if t != nil {
			attrs = append(attrs, strings.ToLower(t.kind.String()), t.show)
		}
	}
	wildcard := b.addrs.udpIP.IsUnspecified() || b.addrs.tcpIP.IsUnspecified()
	if wildcard {
		attrs = append(attrs, "local_addrs", b.addrs.localList())
	}
	switch ip, port := b.addrs.bound("udp"); {
	case b.cfg.advHost != "":
		p := b.cfg.advPort
		if p == 0 {
			p = port
		}
		attrs = append(attrs, "advertise", hostPort(b.cfg.advHost, p))
	case wildcard:
		attrs = append(attrs, "advertise", "the interface address towards each destination")
	default:
		attrs = append(attrs, "advertise", hostPort(ip.String(), port))
	}
	return attrs
}
