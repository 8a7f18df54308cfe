package sipbridge

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipua"
)

// TestIPv6UAs: IPv6 user agents register, call and are called — at a node bound to [::1]
// and at a dual-stack wildcard node that serves an IPv4 UA too — in the same node and
// across nodes; the BYE reaches the callee.
func TestIPv6UAs(t *testing.T) {
	dir := newMemDir()
	n1 := newTestNode(t, dir, "pastry", WithListen("[::]:0"))
	n2 := newTestNode(t, dir, "pastry", WithListen("[::1]:0"))
	connect(t, n1, n2)
	ctx := ctxT(t, 30*time.Second)
	port1 := fmt.Sprint(portOf(n1.b.UDPAddr()))
	ua := func(aor, node, listen string) *sipua.UA {
		u, err := sipua.NewUA(aor, node, sipua.WithUALogger(testLogger(t)), sipua.WithUAListen(listen), sipua.WithUAAnswer(sipua.AnswerAuto, 0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = u.Close() })
		if _, err := u.Register(ctx, 0); err != nil {
			t.Fatalf("%s registers: %v", aor, err)
		}
		return u
	}
	alice := ua("sip:alice@pastry", net.JoinHostPort("127.0.0.1", port1), "127.0.0.1:0")
	bob := ua("sip:bob@pastry", net.JoinHostPort("::1", port1), "[::1]:0")
	carol := ua("sip:carol@pastry", n2.b.UDPAddr(), "[::1]:0")
	for _, c := range []struct{ from, to *sipua.UA }{{alice, bob}, {bob, alice}, {bob, carol}, {carol, bob}, {alice, carol}} {
		call, err := c.from.Call(ctx, c.to.AOR().String())
		if err != nil {
			t.Fatalf("%s → %s: %v", c.from.AOR(), c.to.AOR(), err)
		}
		var in *sipua.Call
		select {
		case in = <-c.to.Incoming():
		case <-ctx.Done():
			t.Fatalf("%s never saw the call", c.to.AOR())
		}
		if err := call.Hangup(ctx); err != nil {
			t.Fatalf("%s → %s: BYE: %v", c.from.AOR(), c.to.AOR(), err)
		}
		select {
		case <-in.Done():
		case <-ctx.Done():
			t.Fatalf("%s never saw the BYE", c.to.AOR())
		}
	}
}
