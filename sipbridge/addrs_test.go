package sipbridge

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/sipua"
)

// lanBook is the address book of a node bound to the wildcard address on a machine with a
// LAN address in each family, whose routes send 2001:db8::/64 and 192.0.2.0/24 out of the
// LAN interface and everything else through a default route on the IPv4 LAN.
func lanBook(advHost string, advPort int) *addrBook {
	a := newAddrBook(&net.UDPAddr{IP: net.IPv6unspecified, Port: 5060}, &net.TCPAddr{IP: net.IPv6unspecified, Port: 5060}, advHost, advPort)
	a.ifaceAddrs = func() ([]net.Addr, error) {
		var out []net.Addr
		for _, s := range []string{"127.0.0.1/8", "::1/128", "192.0.2.10/24", "2001:db8::10/64", "fe80::1/64"} {
			ip, n, _ := net.ParseCIDR(s)
			out = append(out, &net.IPNet{IP: ip, Mask: n.Mask})
		}
		return out, nil
	}
	a.routeLookup = func(dst netip.Addr) (netip.Addr, error) {
		switch {
		case dst.IsLoopback():
			return dst, nil
		case dst.Is6():
			return netip.MustParseAddr("2001:db8::10"), nil
		}
		return netip.MustParseAddr("192.0.2.10"), nil
	}
	return a
}

// TestIsMineWildcard: a node bound to 0.0.0.0/[::] knows every address of its machine (and
// its advertised one) at its SIP port as itself, nothing else; a node bound to one address
// knows that one.
func TestIsMineWildcard(t *testing.T) {
	a := lanBook("sip.example.org", 0)
	for _, c := range []struct {
		host string
		port int
		want bool
	}{
		{"192.0.2.10", 5060, true}, {"192.0.2.10", 0, true}, {"[2001:db8::10]", 5060, true},
		{"2001:db8::10", 5060, true}, {"127.0.0.1", 5060, true}, {"[::1]", 5060, true}, {"::ffff:192.0.2.10", 5060, true},
		{"fe80::1", 5060, true}, {"SIP.example.org", 5060, true},
		{"192.0.2.10", 5070, false}, {"192.0.2.11", 5060, false}, {"2001:db8::11", 5060, false},
		{"0.0.0.0", 5060, false}, {"example.org", 5060, false}, {"sip.example.org", 5070, false},
	} {
		if got := a.mine(c.host, c.port); got != c.want {
			t.Errorf("wildcard: mine(%s, %d) = %v, want %v", c.host, c.port, got, c.want)
		}
	}
	one := newAddrBook(&net.UDPAddr{IP: net.ParseIP("192.0.2.10"), Port: 5060}, nil, "", 0)
	for _, c := range []struct {
		host string
		want bool
	}{{"192.0.2.10", true}, {"127.0.0.1", false}, {"2001:db8::10", false}} {
		if got := one.mine(c.host, 5060); got != c.want {
			t.Errorf("bound to 192.0.2.10: mine(%s) = %v, want %v", c.host, got, c.want)
		}
	}
}

// TestAdvertised: what a node writes into Via/Record-Route towards a destination: the
// interface address of the route there when bound to the wildcard, the bound address
// otherwise, the advertised address when set (with its port) — except towards loopback.
func TestAdvertised(t *testing.T) {
	for _, c := range []struct {
		name     string
		a        *addrBook
		tp, dst  string
		wantHost string
		wantPort int
	}{
		{"wildcard, LAN phone", lanBook("", 0), "udp", "192.0.2.20:5062", "192.0.2.10", 5060},
		{"wildcard, IPv6 phone", lanBook("", 0), "udp", "[2001:db8::20]:5062", "2001:db8::10", 5060},
		{"wildcard, phone on the node's machine", lanBook("", 0), "udp", "127.0.0.1:5062", "127.0.0.1", 5060},
		{"wildcard, IPv6 loopback", lanBook("", 0), "tcp", "[::1]:5062", "::1", 5060},
		{"wildcard, unknown destination", lanBook("", 0), "udp", "", "192.0.2.10", 5060},
		{"advertise", lanBook("203.0.113.7", 0), "udp", "198.51.100.9:5062", "203.0.113.7", 5060},
		{"advertise with port", lanBook("sip.example.org", 5080), "tcp", "198.51.100.9:5062", "sip.example.org", 5080},
		{"advertise, loopback phone", lanBook("203.0.113.7", 0), "udp", "127.0.0.1:5062", "127.0.0.1", 5060},
		{"bound", newAddrBook(&net.UDPAddr{IP: net.ParseIP("192.0.2.10"), Port: 5070}, nil, "", 0), "udp", "127.0.0.1:1", "192.0.2.10", 5070},
	} {
		h, p := c.a.advertised(c.tp, c.dst)
		if h != c.wantHost || p != c.wantPort {
			t.Errorf("%s: advertised %s:%d, want %s:%d", c.name, h, p, c.wantHost, c.wantPort)
		}
	}
}

func TestParseAdvertise(t *testing.T) {
	for _, c := range []struct {
		in   string
		host string
		port int
		ok   bool
	}{
		{"", "", 0, true}, {"203.0.113.7", "203.0.113.7", 0, true}, {"203.0.113.7:5080", "203.0.113.7", 5080, true},
		{"2001:db8::7", "2001:db8::7", 0, true}, {"[2001:db8::7]", "2001:db8::7", 0, true}, {"[2001:db8::7]:5080", "2001:db8::7", 5080, true},
		{"SIP.Example.org:5060", "sip.example.org", 5060, true},
		{"0.0.0.0", "", 0, false}, {"[::]:5060", "", 0, false}, {"host:0", "", 0, false}, {"host:99999", "", 0, false},
		{"bad host", "", 0, false}, {"a..b", "", 0, false}, {"-a.b", "", 0, false}, {"[2001:db8::7", "", 0, false},
	} {
		h, p, err := parseAdvertise(c.in)
		if (err == nil) != c.ok || h != c.host || p != c.port {
			t.Errorf("parseAdvertise(%q) = %q, %d, %v", c.in, h, p, err)
		}
		if err != nil && !errors.Is(err, ErrBadOption) {
			t.Errorf("parseAdvertise(%q): %v does not wrap ErrBadOption", c.in, err)
		}
		if ValidateAdvertise(c.in) == nil != c.ok {
			t.Errorf("ValidateAdvertise(%q) disagrees", c.in)
		}
	}
}

// loopbackUA is a UA on 127.0.0.1 whose node listens on port of every address.
func loopbackUA(t *testing.T, aor string, port int, opts ...sipua.UAOption) *sipua.UA {
	t.Helper()
	u, err := sipua.NewUA(aor, net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), append([]sipua.UAOption{sipua.WithUALogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return u
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// someLocalIP returns a non-loopback address of this machine.
func someLocalIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	t.Fatal("this machine has no non-loopback IPv4 address")
	return ""
}

// TestWildcardRouteToSelf: a node bound to 0.0.0.0 takes a Route naming its LAN address as
// itself (the outbound proxy of a phone on the LAN) and routes the request on, instead of
// forwarding it to itself until Max-Forwards runs out (483). Its log names the addresses it
// is bound to and answers on, not "[::]".
func TestWildcardRouteToSelf(t *testing.T) {
	lan := someLocalIP(t)
	var logs lockedBuffer
	n := newTestNode(t, newMemDir(), "pastry", WithListen("0.0.0.0:0"), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	port := portOf(n.b.UDPAddr())
	if n.b.UDPAddr() != fmt.Sprintf("0.0.0.0:%d", port) {
		t.Fatalf("UDPAddr %q", n.b.UDPAddr())
	}
	if l := logs.String(); !strings.Contains(l, "sip bridge started") || strings.Contains(l, "[::]") || !strings.Contains(l, lan) {
		t.Fatalf("start log: %s", l)
	}
	ctx := ctxT(t, 20*time.Second)
	bob := loopbackUA(t, "sip:bob@pastry", port, sipua.WithUAAnswer(sipua.AnswerAuto, 0))
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	phone := newRawPhone(t, "udp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	phone.send(fmt.Sprintf("MESSAGE sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKroute1;rport\r\n"+
		"Route: <sip:%s:%d;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:carol@pastry>;tag=c1\r\nTo: <sip:bob@pastry>\r\n"+
		"Call-ID: route-to-self\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
		phone.addr(), lan, port))
	res := phone.expect("answer to MESSAGE", 10*time.Second, isResponse(sip.MESSAGE)).(*sip.Response)
	if res.StatusCode != 200 {
		t.Fatalf("MESSAGE routed via the node's LAN address: %d %s", res.StatusCode, res.Reason)
	}
	select {
	case m := <-bob.Messages():
		if string(m.Body) != "hi" {
			t.Fatalf("bob got %q", m.Body)
		}
	case <-ctx.Done():
		t.Fatal("bob got nothing")
	}
}

// TestRecordRouteTowardsEachUA: a wildcard-bound node record-routes with the address each
// UA reaches it at — never "[::]" — and, when caller and callee reach it at different
// addresses (a phone on the node's machine on loopback, one on the LAN), adds one
// Record-Route for each side, the callee's on top.
func TestRecordRouteTowardsEachUA(t *testing.T) {
	lan := someLocalIP(t)
	n := newTestNode(t, newMemDir(), "pastry", WithListen("0.0.0.0:0"), trustLAN(lan))
	port := portOf(n.b.UDPAddr())
	ctx := ctxT(t, 20*time.Second)
	// bob reaches the node on the LAN address; alice on loopback.
	bob, err := sipua.NewUA("sip:bob@pastry", net.JoinHostPort(lan, fmt.Sprint(port)), sipua.WithUALogger(testLogger(t)),
		sipua.WithUAListen(net.JoinHostPort(lan, "0")), sipua.WithUAAnswer(sipua.AnswerAuto, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bob.Close() })
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	alice := loopbackUA(t, "sip:alice@pastry", port)
	call, err := alice.Call(ctx, "sip:bob@pastry")
	if err != nil {
		t.Fatal(err)
	}
	var in *sipua.Call
	select {
	case in = <-bob.Incoming():
	case <-ctx.Done():
		t.Fatal("bob never saw the call")
	}
	var rr []string
	for _, h := range in.Invite.GetHeaders("Record-Route") {
		rr = append(rr, h.Value())
	}
	if len(rr) != 2 || !strings.Contains(rr[0], lan+":") || !strings.Contains(rr[1], "127.0.0.1:") {
		t.Fatalf("Record-Route %q: want the LAN address (callee's side) on top of 127.0.0.1 (caller's)", rr)
	}
	if v := in.Invite.Via(); v.Host != lan || v.Port != port {
		t.Fatalf("Via towards bob %s, want %s:%d", v.Value(), lan, port)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatalf("BYE along both Record-Routes: %v", err)
	}
	select {
	case <-in.Done():
	case <-ctx.Done():
		t.Fatal("bob never saw the BYE")
	}
}

// TestAdvertiseOption: with WithAdvertise the node writes that address (host and port)
// into the Via and Record-Route a UA on another machine sees, and takes a Route naming it
// as itself.
func TestAdvertiseOption(t *testing.T) {
	lan := someLocalIP(t)
	n := newTestNode(t, newMemDir(), "pastry", WithListen("0.0.0.0:0"), WithAdvertise("sip.example.org:5999"), trustLAN(lan))
	port := portOf(n.b.UDPAddr())
	ctx := ctxT(t, 20*time.Second)
	bob, err := sipua.NewUA("sip:bob@pastry", net.JoinHostPort(lan, fmt.Sprint(port)), sipua.WithUALogger(testLogger(t)),
		sipua.WithUAListen(net.JoinHostPort(lan, "0")), sipua.WithUAAnswer(sipua.AnswerAuto, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bob.Close() })
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	phone := newRawPhone(t, "udp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	phone.send(fmt.Sprintf("MESSAGE sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKadv1;rport\r\n"+
		"Route: <sip:sip.example.org:5999;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:carol@pastry>;tag=c1\r\nTo: <sip:bob@pastry>\r\n"+
		"Call-ID: advertise\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi", phone.addr()))
	if res := phone.expect("answer to MESSAGE", 10*time.Second, isResponse(sip.MESSAGE)).(*sip.Response); res.StatusCode != 200 {
		t.Fatalf("MESSAGE via the advertised address: %d %s", res.StatusCode, res.Reason)
	}
	alice := loopbackUA(t, "sip:alice@pastry", port)
	if _, err := alice.Call(ctx, "sip:bob@pastry"); err != nil {
		t.Fatal(err)
	}
	in := <-bob.Incoming()
	if v := in.Invite.Via(); v.Host != "sip.example.org" || v.Port != 5999 {
		t.Fatalf("Via %s, want the advertised address", v.Value())
	}
	if rr := in.Invite.GetHeader("Record-Route"); rr == nil || !strings.Contains(rr.Value(), "sip.example.org:5999") {
		t.Fatalf("Record-Route %v, want the advertised address", rr)
	}
}

// trustLAN lets UAs at ip use a node without a users file (WithTrustedNetworks).
func trustLAN(ip string) Option {
	return WithTrustedNetworks(netip.PrefixFrom(netip.MustParseAddr(ip), 32))
}

// TestRegisterContactOfThisNode: a REGISTER whose contact is the node's own UDP address is
// refused (every call to it would loop), but a UDP contact at the port number of the
// node's TCP listener is a phone's, not the node's (a UDP and a TCP socket may share a
// number), and is registered.
func TestRegisterContactOfThisNode(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry")
	alice := newTestUA(t, "sip:alice@pastry", n)
	ctx := ctxT(t, 10*time.Second)
	contact := func(addr string) sip.Uri {
		ap := netip.MustParseAddrPort(addr)
		return sip.Uri{Scheme: "sip", User: "alice", Host: ap.Addr().String(), Port: int(ap.Port())}
	}
	udp, tcp := n.b.UDPAddr(), n.b.TCPAddr()
	if udp == tcp {
		t.Skipf("UDP and TCP share %s", udp)
	}
	res, err := alice.RegisterContact(ctx, contact(udp), time.Minute)
	if res == nil || res.StatusCode != 400 {
		t.Errorf("contact at the node's UDP address: %v %v, want 400", res, err)
	}
	if res, err := alice.RegisterContact(ctx, contact(tcp), time.Minute); err != nil || res.StatusCode != 200 {
		t.Errorf("UDP contact at the port of the node's TCP listener: %v %v, want 200", res, err)
	}
}
