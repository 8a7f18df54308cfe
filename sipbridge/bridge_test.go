package sipbridge

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/sipua"
)

func statusesOf(c *sipua.Call) []int {
	var s []int
	for _, r := range c.Responses {
		s = append(s, r.StatusCode)
	}
	return s
}

func twoNodes(t *testing.T) (*testNode, *testNode) {
	dir := newMemDir()
	n1 := newTestNode(t, dir, "pastry")
	n2 := newTestNode(t, dir, "pastry")
	connect(t, n1, n2)
	return n1, n2
}

func TestDialogBothDirections(t *testing.T) {
	n1, n2 := twoNodes(t)
	// sipgo hands each received response to its own goroutine, so a 180 sent right before
	// the 200 may be overtaken; the callee rings a little, as people do.
	ring := sipua.WithUAAnswer(sipua.AnswerAuto, 20*time.Millisecond)
	alice := newTestUA(t, "sip:alice@pastry", n1, ring)
	bob := newTestUA(t, "sip:bob@pastry", n2, ring)
	ctx := ctxT(t, 20*time.Second)
	if _, err := alice.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if b := n1.loc.binding("sip:bob@pastry"); b == nil || b.Peer != n2.h.ID() || len(b.Contacts) != 1 {
		t.Fatalf("bob's binding: %+v", b)
	}

	for i, dir := range []struct {
		caller, callee *sipua.UA
		target         string
		calleeHangs    bool
	}{{alice, bob, "sip:bob@pastry", false}, {bob, alice, "sip:alice@pastry", true}} {
		call, err := dir.caller.Call(ctx, dir.target)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		st := statusesOf(call)
		if !slices.Contains(st, 100) || !slices.Contains(st, 180) || st[len(st)-1] != 200 {
			t.Fatalf("call %d: responses %v, want ... 180 ... 200", i, st)
		}
		var in *sipua.Call
		select {
		case in = <-dir.callee.Incoming():
		case <-ctx.Done():
			t.Fatal("callee never saw the call")
		}
		if h := in.Invite.GetHeader("Node-ID"); h == nil || h.Value() != "<"+dir.caller.AOR().String()+">" {
			t.Fatalf("call %d: Node-ID %v", i, h)
		}
		if h := in.Invite.GetHeader("Overlay-ID"); h == nil || h.Value() != "<sip:overlay@pastry>" {
			t.Fatalf("call %d: Overlay-ID %v", i, h)
		}
		if mf := in.Invite.MaxForwards(); mf == nil || mf.Val() != 68 {
			t.Fatalf("call %d: Max-Forwards %v at the callee, want 68 (two proxies)", i, mf)
		}
		hang, other := call, in
		if dir.calleeHangs {
			hang, other = in, call
		}
		lookups := n1.loc.dir.lookupCount()
		if err := hang.Hangup(ctx); err != nil {
			t.Fatalf("call %d: BYE: %v", i, err)
		}
		select {
		case <-other.Done():
		case <-ctx.Done():
			t.Fatalf("call %d: BYE never reached the other side", i)
		}
		if n := n1.loc.dir.lookupCount(); n != lookups {
			t.Fatalf("call %d: BYE needed %d overlay lookups, want none (node to node)", i, n-lookups)
		}
	}
	for _, e := range alice.Ladder() {
		t.Log("alice", e)
	}
}

func TestCancelBeforeAnswer(t *testing.T) {
	n1, n2 := twoNodes(t)
	alice := newTestUA(t, "sip:alice@pastry", n1)
	bob := newTestUA(t, "sip:bob@pastry", n2, sipua.WithUAAnswer(sipua.AnswerRingOnly, 0))
	ctx := ctxT(t, 20*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	callCtx, cancel := context.WithCancel(ctx)
	done := make(chan *sipua.Call, 1)
	go func() {
		c, _ := alice.Call(callCtx, "sip:bob@pastry")
		done <- c
	}()
	// cancel once the 180 reached alice
	eventually(t, 10*time.Second, "180 Ringing at the caller", func() bool {
		for _, e := range alice.Ladder() {
			if strings.Contains(e.First, "180") {
				return true
			}
		}
		return false
	})
	cancel()
	c := <-done
	eventually(t, 10*time.Second, "487 at the caller", func() bool {
		for _, e := range alice.Ladder() {
			if !e.Sent && strings.Contains(e.First, "487") {
				return true
			}
		}
		return false
	})
	_ = c
	eventually(t, 10*time.Second, "CANCEL at the callee", func() bool {
		for _, e := range bob.Ladder() {
			if !e.Sent && strings.HasPrefix(e.First, "CANCEL") {
				return true
			}
		}
		return false
	})
}

func TestMessage(t *testing.T) {
	n1, n2 := twoNodes(t)
	alice := newTestUA(t, "sip:alice@pastry", n1)
	bob := newTestUA(t, "sip:bob@pastry", n2)
	ctx := ctxT(t, 20*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	res, err := alice.Message(ctx, "sip:bob@pastry", "hello bob")
	if err != nil || res.StatusCode != 200 {
		for _, e := range alice.Ladder() {
			t.Log(e)
		}
		t.Fatalf("MESSAGE: %v %v", res, err)
	}
	select {
	case m := <-bob.Messages():
		if string(m.Body) != "hello bob" || !strings.Contains(m.From, "alice@pastry") {
			t.Fatalf("got %+v", m)
		}
	case <-ctx.Done():
		t.Fatal("no MESSAGE")
	}
}

func TestUnknownAndUnreachable(t *testing.T) {
	n1, n2 := twoNodes(t)
	alice := newTestUA(t, "sip:alice@pastry", n1)
	bob := newTestUA(t, "sip:bob@pastry", n2)
	ctx := ctxT(t, 30*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	_, err := alice.Call(ctx, "sip:nobody@pastry")
	var cf *sipua.ErrCallFailed
	if !errors.As(err, &cf) || cf.Response.StatusCode != 404 {
		t.Fatalf("unknown AOR: %v, want 404", err)
	}
	_, err = alice.Call(ctx, "sip:carol@elsewhere")
	if !errors.As(err, &cf) || cf.Response.StatusCode != 404 || !strings.Contains(cf.Response.Reason, "elsewhere") {
		t.Fatalf("other domain: %v, want 404 naming the domain", err)
	}
	if err := n2.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n2.b.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	_ = n2.h.Close()
	_, err = alice.Call(ctx, "sip:bob@pastry")
	if !errors.As(err, &cf) || cf.Response.StatusCode != 480 {
		t.Fatalf("callee node closed: %v, want 480", err)
	}
}

// TestInDialogRequests: re-INVITE, INFO, UPDATE and MESSAGE inside a call follow the
// Record-Route path node to node.
func TestInDialogRequests(t *testing.T) {
	n1, n2 := twoNodes(t)
	ring := sipua.WithUAAnswer(sipua.AnswerAuto, 10*time.Millisecond)
	alice := newTestUA(t, "sip:alice@pastry", n1, ring)
	bob := newTestUA(t, "sip:bob@pastry", n2, ring)
	ctx := ctxT(t, 20*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	call, err := alice.Call(ctx, "sip:bob@pastry")
	if err != nil {
		t.Fatal(err)
	}
	in := <-bob.Incoming()
	if res, err := call.Reinvite(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("re-INVITE: %v %v", res, err)
	}
	for _, m := range []sip.RequestMethod{sip.INFO, sip.UPDATE, sip.MESSAGE} {
		if res, err := call.Request(ctx, m, "text/plain", []byte("x")); err != nil || res.StatusCode != 200 {
			t.Fatalf("%s from caller: %v %v", m, res, err)
		}
		if res, err := in.Request(ctx, m, "text/plain", []byte("y")); err != nil || res.StatusCode != 200 {
			t.Fatalf("%s from callee: %v %v", m, res, err)
		}
	}
	if err := in.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("BYE from callee not delivered")
	}
}

// TestCloseDuringCall: closing nodes with a call ringing returns promptly.
func TestCloseDuringCall(t *testing.T) {
	n1, n2 := twoNodes(t)
	alice := newTestUA(t, "sip:alice@pastry", n1)
	bob := newTestUA(t, "sip:bob@pastry", n2, sipua.WithUAAnswer(sipua.AnswerRingOnly, 0))
	ctx := ctxT(t, 20*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = alice.Call(ctx, "sip:bob@pastry") }()
	eventually(t, 10*time.Second, "180 at the caller", func() bool {
		for _, e := range alice.Ladder() {
			if strings.Contains(e.First, "180") {
				return true
			}
		}
		return false
	})
	done := make(chan struct{})
	go func() {
		_ = n2.b.Close()
		_ = n1.b.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung with a call in progress")
	}
}
