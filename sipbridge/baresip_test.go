package sipbridge

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/softphone"
	"github.com/hiersip/hiersip/sipua"
)

// TestBaresip registers the baresip softphone (with digest authentication) at node 2; a
// hiersip UA at node 1 calls it (baresip answers automatically), then baresip calls the UA.
func TestBaresip(t *testing.T) {
	users := NewUsers()
	users.Add("carol", "pastry", "pw")
	dir := newMemDir()
	n1 := newTestNode(t, dir, "pastry")
	// baresip 1.0 (libre 1.x) gives up when a challenge names SHA-256
	n2 := newTestNode(t, dir, "pastry", WithUsers(users), WithDigestAlgorithms("MD5"))
	connect(t, n1, n2)
	ctx := ctxT(t, 30*time.Second)

	carol := softphone.StartBaresip(t, softphone.Account{AOR: "sip:carol@pastry", Password: "pw", Node: n2.b.UDPAddr()})
	eventually(t, 15*time.Second, "baresip to register", func() bool {
		b := n2.loc.binding("sip:carol@pastry")
		return b != nil && !b.Removed && len(b.Contacts) > 0
	})

	ring := sipua.WithUAAnswer(sipua.AnswerAuto, 20*time.Millisecond)
	alice := newTestUA(t, "sip:alice@pastry", n1, ring)
	if _, err := alice.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}

	// hiersip UA → baresip
	call, err := alice.Call(ctx, "sip:carol@pastry")
	if err != nil {
		t.Fatalf("calling baresip: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := carol.WaitFor(wctx, "Call established"); err != nil {
		t.Fatal(err)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatalf("BYE to baresip: %v", err)
	}
	eventually(t, 10*time.Second, "baresip to see the BYE", func() bool {
		out := carol.Output()
		return strings.Contains(strings.ToLower(out), "connection reset by peer") ||
			strings.Contains(out, "Call closed") || strings.Contains(out, "terminated")
	})

	// baresip → hiersip UA
	if err := carol.Dial(ctx, "sip:alice@pastry"); err != nil {
		t.Fatal(err)
	}
	var in *sipua.Call
	select {
	case in = <-alice.Incoming():
	case <-ctx.Done():
		t.Fatal("baresip's call never reached the hiersip UA")
	}
	eventually(t, 10*time.Second, "the call to be acknowledged", func() bool {
		for _, e := range alice.Ladder() {
			if !e.Sent && strings.HasPrefix(e.First, "ACK") {
				return true
			}
		}
		return false
	})
	hctx, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	if err := in.Hangup(hctx); err != nil {
		t.Fatalf("BYE from the hiersip UA to baresip: %v", err)
	}
}
