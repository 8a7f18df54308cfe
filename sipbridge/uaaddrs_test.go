package sipbridge

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestPeerCannotUseNodeAsReflector: another node may not make this node send SIP to an
// arbitrary address: a request over /hiersip/sip/1.0.0 whose Request-URI (or Route) is a
// contact address gets 403 unless the address is one of the node's own user agents.
func TestPeerCannotUseNodeAsReflector(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry")
	rp := newRawPeer(t, n)
	ctx := ctxT(t, 20*time.Second)
	victim, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	port := victim.LocalAddr().(*net.UDPAddr).Port
	req := func(branch, extra string) string {
		return fmt.Sprintf("OPTIONS sip:v@127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/P2P x;branch=z9hG4bK%s\r\n"+
			"Max-Forwards: 70\r\nTo: <sip:v@pastry>\r\nFrom: <sip:a@pastry>;tag=1\r\nCall-ID: %s\r\n"+
			"CSeq: 1 OPTIONS\r\n%sContent-Length: 0\r\n\r\n", port, branch, branch, extra)
	}
	s := rp.open(ctx)
	if _, err := s.Write([]byte(req("refl1", ""))); err != nil {
		t.Fatal(err)
	}
	rp.expect("403 for a foreign contact address", status(403))
	if _, err := s.Write([]byte(req("refl2", fmt.Sprintf("Route: <sip:127.0.0.1:%d;lr>\r\n", port)))); err != nil {
		t.Fatal(err)
	}
	rp.expect("403 for a Route to a foreign address", status(403))

	// Once a UA of the node is registered at that address, the same request reaches it.
	ua := newTestUA(t, "sip:v@pastry", n)
	if _, err := ua.RegisterContact(ctx, sip.Uri{Scheme: "sip", User: "v", Host: "127.0.0.1", Port: port}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte(req("refl3", ""))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	_ = victim.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		nr, _, err := victim.ReadFrom(buf)
		if err != nil {
			t.Fatalf("registered UA got nothing: %v", err)
		}
		m, err := sip.ParseMessage(buf[:nr])
		if r, ok := m.(*sip.Request); err == nil && ok && r.CallID().Value() == "refl3" {
			return
		}
		if r, ok := m.(*sip.Request); err == nil && ok && r.CallID().Value() != "refl3" {
			t.Fatalf("UA got a refused request: %s", r.CallID().Value())
		}
	}
}
