package sipbridge

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestLoopThroughUA: a request that comes back to the node through something outside it
// (here a "contact" that is a stateless proxy sending everything back to the node) is
// refused with 482 once it returns unchanged; its first return, with the Request-URI the
// node itself changed (the AOR became the contact), is a spiral and goes on. Today's
// caller gets 482 Loop Detected, not 483 after 70 hops.
func TestLoopThroughUA(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry")
	ctx := ctxT(t, 20*time.Second)
	node, err := net.ResolveUDPAddr("udp", n.b.UDPAddr())
	if err != nil {
		t.Fatal(err)
	}
	refl, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer refl.Close()
	var requests atomic.Int32
	go func() {
		buf := make([]byte, 65535)
		for i := 0; ; i++ {
			nr, _, err := refl.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(append([]byte(nil), buf[:nr]...))
			if err != nil {
				continue
			}
			switch m := m.(type) {
			case *sip.Request:
				requests.Add(1)
				v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
					Host: "127.0.0.1", Port: refl.LocalAddr().(*net.UDPAddr).Port, Params: sip.NewParams()}
				v.Params.Add("branch", fmt.Sprintf("z9hG4bKrefl%d", i))
				m.PrependHeader(v)
				if mf := m.MaxForwards(); mf != nil {
					mf.Dec()
				}
				_, _ = refl.WriteTo([]byte(m.String()), node)
			case *sip.Response:
				m.RemoveHeader("Via")
				_, _ = refl.WriteTo([]byte(m.String()), node)
			}
		}
	}()
	bob := newTestUA(t, "sip:bob@pastry", n)
	contact := sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: refl.LocalAddr().(*net.UDPAddr).Port}
	if _, err := bob.RegisterContact(ctx, contact, time.Minute); err != nil {
		t.Fatal(err)
	}
	alice := newTestUA(t, "sip:alice@pastry", n)
	res, err := alice.Message(ctx, "sip:bob@pastry", "round and round")
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 482 {
		t.Fatalf("looping MESSAGE: %d %s, want 482", res.StatusCode, res.Reason)
	}
	if got := requests.Load(); got != 2 {
		t.Fatalf("the reflector saw %d requests, want 2 (the first pass and one spiral)", got)
	}
}

// TestLooped: the loop check itself. A Via of this node whose branch hashes the request as
// it is now is a loop, over the overlay and over UDP; the same Via on a request whose
// Request-URI or Route changed is a spiral; a UA's Via that happens to name the node's
// address with a branch of its own is not this node's.
func TestLooped(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry")
	b := n.b
	mk := func(ruri, route string) *sip.Request {
		raw := "MESSAGE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5062;branch=z9hG4bKua\r\n"
		if route != "" {
			raw += "Route: <" + route + ">\r\n"
		}
		raw += "Max-Forwards: 70\r\nFrom: <sip:a@pastry>;tag=1\r\nTo: <sip:b@pastry>\r\nCall-ID: loop\r\nCSeq: 7 MESSAGE\r\nContent-Length: 0\r\n\r\n"
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return m.(*sip.Request)
	}
	withVia := func(req *sip.Request, transport, host string, port int, branch string) *sip.Request {
		r := req.Clone()
		v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: transport, Host: host, Port: port, Params: sip.NewParams()}
		v.Params.Add("branch", branch)
		r.PrependHeader(v)
		return r
	}
	orig := mk("sip:b@pastry", "sip:192.0.2.99:5060;lr")
	br := b.branch(orig)
	me, port := "127.0.0.1", b.addrs.udpPort
	if _, ok := branchLoopKey(br); !ok || !strings.HasPrefix(br, branchMagic) {
		t.Fatalf("branch %q", br)
	}
	for _, c := range []struct {
		name string
		req  *sip.Request
		want bool
	}{
		{"back over the overlay, unchanged", withVia(orig, overlayTransport, b.selfStr, 0, br), true},
		{"back over UDP, unchanged", withVia(orig, "UDP", me, port, br), true},
		{"spiral: other Request-URI", withVia(mk("sip:b@192.0.2.21:5062", "sip:192.0.2.99:5060;lr"), "UDP", me, port, br), false},
		{"spiral: Route consumed", withVia(mk("sip:b@pastry", ""), overlayTransport, b.selfStr, 0, br), false},
		{"our overlay Via, branch of an older version", withVia(orig, overlayTransport, b.selfStr, 0, "z9hG4bKabcdefabcdefabcd"), true},
		{"a UA's Via at our address", withVia(orig, "UDP", me, port, "z9hG4bKhs0123456789abcdef.x"), false},
		{"another node's Via", withVia(orig, overlayTransport, "12D3KooWother", 0, br), false},
		{"never here", orig, false},
	} {
		if got := b.looped(c.req); got != c.want {
			t.Errorf("%s: looped = %v, want %v", c.name, got, c.want)
		}
	}
	// Two nodes never compute the same key for a request.
	other := newTestNode(t, newMemDir(), "pastry")
	if other.b.loopKey(orig) == b.loopKey(orig) {
		t.Fatal("two nodes share a loop key")
	}
}

// TestRegisterContactIsNode: a REGISTER whose Contact names the node itself would make
// every request for the AOR loop; it is refused.
func TestRegisterContactIsNode(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry")
	ua := newTestUA(t, "sip:bob@pastry", n)
	self := sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: n.b.addrs.udpPort}
	res, err := ua.RegisterContact(ctxT(t, 10*time.Second), self, time.Minute)
	if err == nil || res == nil || res.StatusCode != 400 {
		t.Fatalf("REGISTER of the node's own address: %v %v", res, err)
	}
	if !strings.Contains(res.Reason, "this node") {
		t.Fatalf("reason %q", res.Reason)
	}
}
