package sipbridge

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/sipua"
)

// callOf returns the call n lists with Call-ID id.
func callOf(n *testNode, id string) (Call, bool) {
	for _, c := range n.b.Calls() {
		if c.CallID == id {
			return c, true
		}
	}
	return Call{}, false
}

// waitCall waits until n lists the call id in state (state "": not at all) and returns it.
func waitCall(t *testing.T, n *testNode, id, state string) Call {
	t.Helper()
	var c Call
	eventually(t, 10*time.Second, fmt.Sprintf("call %s %q at %s", id, state, n.h.ID()), func() bool {
		var ok bool
		c, ok = callOf(n, id)
		return (state == "" && !ok) || (ok && c.State == state)
	})
	return c
}

func tagged(tag string) sip.HeaderParams {
	p := sip.NewParams()
	p.Add("tag", tag)
	return p
}

// TestCallsTable: both end nodes list a call, early while it rings, confirmed once
// answered, and forget it after the BYE; a cancelled call goes away with its 487.
func TestCallsTable(t *testing.T) {
	n1, n2 := twoNodes(t)
	alice := newTestUA(t, "sip:alice@pastry", n1)
	bob := newTestUA(t, "sip:bob@pastry", n2, sipua.WithUAAnswer(sipua.AnswerRingOnly, 0))
	carol := newTestUA(t, "sip:carol@pastry", n2)
	ctx := ctxT(t, 30*time.Second)
	for _, u := range []*sipua.UA{bob, carol} {
		if _, err := u.Register(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}

	// Ringing: early at both nodes, then gone with the CANCEL.
	callCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = alice.Call(callCtx, "sip:bob@pastry")
	}()
	var id string
	eventually(t, 10*time.Second, "the call to bob at the caller's node", func() bool {
		for _, c := range n1.b.Calls() {
			if c.To == "sip:bob@pastry" {
				id = c.CallID
			}
		}
		return id != ""
	})
	out := waitCall(t, n1, id, CallEarly)
	if out.Direction != CallOut || out.From != "sip:alice@pastry" || out.To != "sip:bob@pastry" ||
		!strings.HasPrefix(out.Upstream, "phone ") || len(out.Downstream) != 1 || out.Downstream[0] != n2.h.ID().String() ||
		out.Started.IsZero() || !out.Confirmed.IsZero() {
		t.Errorf("caller's node lists %+v", out)
	}
	got := waitCall(t, n2, id, CallEarly)
	if got.Direction != CallIn || got.Upstream != n1.h.ID().String() || len(got.Downstream) != 1 ||
		!strings.HasPrefix(got.Downstream[0], "phone sip:bob@") {
		t.Errorf("callee's node lists %+v", got)
	}
	// sipgo cancels only after a provisional answer (RFC 3261 §9.1): wait for the 180.
	eventually(t, 10*time.Second, "180 Ringing at the caller", func() bool {
		for _, e := range alice.Ladder() {
			if strings.Contains(e.First, "180") {
				return true
			}
		}
		return false
	})
	cancel()
	<-done
	waitCall(t, n1, id, "")
	waitCall(t, n2, id, "")

	// Answered: confirmed at both nodes; a BYE with other tags leaves it; the real BYE ends it.
	call, err := alice.Call(ctx, "sip:carol@pastry")
	if err != nil {
		t.Fatal(err)
	}
	id = call.CallID
	c1 := waitCall(t, n1, id, CallConfirmed)
	c2 := waitCall(t, n2, id, CallConfirmed)
	if c1.Confirmed.Before(c1.Started) || c2.Direction != CallIn {
		t.Errorf("confirmed: %+v / %+v", c1, c2)
	}
	forged := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", User: "carol", Host: "pastry"})
	forged.AppendHeader(sip.NewHeader("Call-ID", id))
	forged.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "mallory", Host: "pastry"}, Params: tagged("x")})
	forged.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "carol", Host: "pastry"}, Params: tagged("y")})
	n1.b.callRequest(forged)
	if _, ok := callOf(n1, id); !ok {
		t.Error("a BYE with other tags ended the call")
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	waitCall(t, n1, id, "")
	waitCall(t, n2, id, "")
}

// TestCallsBounded: a flood of INVITEs cannot grow the table beyond its bound; confirmed
// calls idle longest make room for new ones, early ones are not evicted.
func TestCallsBounded(t *testing.T) {
	dir := newMemDir()
	n := newTestNode(t, dir, "pastry")
	b := n.b
	invite := func(i int) *forwarding {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "pastry"})
		req.AppendHeader(sip.NewHeader("Call-ID", fmt.Sprintf("flood-%d", i)))
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "pastry"}, Params: tagged(fmt.Sprint(i))})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "pastry"}, Params: sip.NewParams()})
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
		return &forwarding{req: req, hop: hop{peer: n.h.ID()}}
	}
	ok := func(f *forwarding) *sip.Response {
		res := sip.NewResponseFromRequest(f.req, 200, "OK", nil)
		res.To().Params.Add("tag", "callee")
		return res
	}
	for i := range callsMax + 1000 {
		b.callForwarded(invite(i))
	}
	if got := len(b.Calls()); got != callsMax {
		t.Fatalf("%d calls listed after %d INVITEs, want the bound %d", got, callsMax+1000, callsMax)
	}
	if _, listed := callOf(n, fmt.Sprintf("flood-%d", callsMax)); listed {
		t.Fatal("a call beyond the bound was listed while all were early")
	}

	b.calls.mu.Lock()
	b.calls.calls, b.calls.max = nil, 10
	b.calls.confirmed.Init()
	b.calls.mu.Unlock()
	for i := range 10 {
		b.callForwarded(invite(i))
	}
	// Calls 0-4 are answered (from a UA: record-routed), 0 first.
	for i := range 5 {
		f := invite(i)
		b.callResponse(f.req, ok(f))
	}
	b.callForwarded(invite(100))
	if _, listed := callOf(n, "flood-0"); listed {
		t.Error("the confirmed call idle longest was kept on a full table")
	}
	if _, listed := callOf(n, "flood-100"); !listed {
		t.Error("a new call found no room though a confirmed one could go")
	}
	if got := len(b.Calls()); got != 10 {
		t.Errorf("%d calls, want 10", got)
	}
	for i := 200; i < 300; i++ {
		b.callForwarded(invite(i))
	}
	calls := b.Calls()
	early := 0
	for _, c := range calls {
		if c.State == CallEarly {
			early++
		}
	}
	if len(calls) != 10 || early != 10 {
		t.Errorf("%d calls, %d early after the flood; want 10, all early (the early ones stay)", len(calls), early)
	}
}
