package sipbridge

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestRingingBeforeOK: a callee UA that sends 180 Ringing and 200 OK back to back
// (as sipp's uas and many phones do) must have both reach the caller, in that order.
// The node's UDP reader hands responses to their client transaction in arrival order, and
// the relay passes them on in that order (with sipgo's transport, which hands every
// datagram to a goroutine of its own, the 200 often overtook the 180).
func TestRingingBeforeOK(t *testing.T) {
	n1, n2 := twoNodes(t)
	ctx := ctxT(t, 60*time.Second)
	callee, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer callee.Close()
	caller, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	reg := newTestUA(t, "sip:bob@pastry", n2)
	cport := callee.LocalAddr().(*net.UDPAddr).Port
	if _, err := reg.RegisterContact(ctx, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: cport}, time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "bob's binding", func() bool { return n1.loc.binding("sip:bob@pastry") != nil })

	// The callee answers every INVITE with 180 and 200 in one burst.
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := callee.ReadFrom(buf)
			if err != nil {
				return
			}
			msg, err := sip.ParseMessage(buf[:n])
			req, ok := msg.(*sip.Request)
			if err != nil || !ok || !req.IsInvite() {
				continue
			}
			for _, code := range []int{180, 200} {
				res := sip.NewResponseFromRequest(req, code, "", nil)
				res.To().Params.Add("tag", "callee")
				_, _ = callee.WriteTo([]byte(res.String()), from)
			}
		}
	}()

	port := caller.LocalAddr().(*net.UDPAddr).Port
	const calls = 20
	for i := range calls {
		callID := fmt.Sprintf("ring-%d@test", i)
		invite := fmt.Sprintf("INVITE sip:bob@pastry SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-ring-%d\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:alice@pastry>;tag=a%d\r\nTo: <sip:bob@pastry>\r\n"+
			"Call-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:%d>\r\nContent-Length: 0\r\n\r\n",
			port, i, i, callID, port)
		addr, _ := net.ResolveUDPAddr("udp", n1.b.UDPAddr())
		if _, err := caller.WriteTo([]byte(invite), addr); err != nil {
			t.Fatal(err)
		}
		var codes []int
		buf := make([]byte, 65535)
		for len(codes) == 0 || codes[len(codes)-1] < 200 {
			dl, _ := ctx.Deadline()
			_ = caller.SetReadDeadline(dl)
			n, _, err := caller.ReadFrom(buf)
			if err != nil {
				t.Fatalf("call %d: responses so far %v: %v", i, codes, err)
			}
			msg, err := sip.ParseMessage(buf[:n])
			if res, ok := msg.(*sip.Response); err == nil && ok && res.CallID().Value() == callID && res.StatusCode > 100 {
				codes = append(codes, res.StatusCode)
			}
		}
		if !slices.Equal(codes, []int{180, 200}) {
			t.Fatalf("call %d: caller got %v, want [180 200]", i, codes)
		}
	}
}

// TestDialogOrder: requests of one dialog are served one after the other in the order they
// were queued, while another dialog's go on; a dialog's queue leaves nothing behind.
func TestDialogOrder(t *testing.T) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got []string
	block := make(chan struct{})
	o := newDialogOrder(func(f func()) bool { wg.Add(1); go func() { defer wg.Done(); f() }(); return true },
		func(in *inbound) {
			id := in.req.CallID().Value() + " " + string(in.req.Method)
			if id == "a INVITE" {
				<-block // a slow lookup in dialog a
			}
			mu.Lock()
			got = append(got, id)
			mu.Unlock()
		})
	req := func(callID string, m sip.RequestMethod) *inbound {
		r := sip.NewRequest(m, sip.Uri{Scheme: "sip", Host: "x"})
		c := sip.CallIDHeader(callID)
		r.AppendHeader(&c)
		return &inbound{req: r}
	}
	o.push("a", req("a", sip.INVITE))
	o.push("a", req("a", sip.ACK))
	o.push("a", req("a", sip.BYE))
	o.push("b", req("b", sip.OPTIONS))
	eventually(t, 5*time.Second, "dialog b served while a waits", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1 && got[0] == "b OPTIONS"
	})
	close(block)
	wg.Wait()
	if want := []string{"b OPTIONS", "a INVITE", "a ACK", "a BYE"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if n := o.pending(); n != 0 {
		t.Fatalf("%d dialog queues left", n)
	}
}
