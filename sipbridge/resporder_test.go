package sipbridge

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const ringing = "SIP/2.0 180 Ringing\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5060;rport=5060;branch=z9hG4bK.abc;received=127.0.0.1\r\n" +
	"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK.other\r\n" +
	"From: <sip:bob@bupt.pastry>;tag=1\r\nTo: <sip:alice@pku.can>;tag=2\r\n" +
	"Call-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"

func TestResponseKeyMatchesParsed(t *testing.T) {
	code, key, ok := responseKey([]byte(ringing))
	if !ok || code != 180 {
		t.Fatalf("responseKey = %d %q %v", code, key, ok)
	}
	msg, err := sip.ParseMessage([]byte(ringing))
	if err != nil {
		t.Fatal(err)
	}
	pkey, ok := clientTxKey(msg.(*sip.Response))
	if !ok || pkey != key {
		t.Fatalf("parsed key %q, raw key %q", pkey, key)
	}
	for _, bad := range []string{"", "INVITE sip:a@b SIP/2.0\r\n\r\n", "SIP/2.0 1x0 X\r\n\r\n", "SIP/2.0 180 X\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 INVITE\r\n\r\n"} {
		if _, _, ok := responseKey([]byte(bad)); ok {
			t.Errorf("responseKey(%q) ok", bad)
		}
	}
}

func TestRespOrderFinalWaitsForProvisional(t *testing.T) {
	o := newRespOrder()
	o.maxWait = time.Minute
	o.read([]byte(ringing))
	final := []byte(ringing[:8] + "200 OK" + ringing[19:])
	done := make(chan struct{})
	go func() { o.read(final); close(done) }()
	select {
	case <-done:
		t.Fatal("final response went on before the provisional was delivered")
	case <-time.After(20 * time.Millisecond):
	}
	msg, _ := sip.ParseMessage([]byte(ringing))
	o.delivered(msg.(*sip.Response))
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("final response still held after the provisional was delivered")
	}
}

func TestRespOrderBounded(t *testing.T) {
	o := newRespOrder()
	o.maxWait = time.Millisecond
	for i := range respOrderMax + 100 {
		o.read([]byte("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=b" + string(rune('a'+i%26)) + itoa(i) + "\r\nCSeq: 1 INVITE\r\n\r\n"))
	}
	if n := len(o.pending); n > respOrderMax {
		t.Fatalf("%d pending entries, max %d", n, respOrderMax)
	}
}

func itoa(i int) string { return time.Duration(i).String() }

// TestRingingBeforeOK: a callee UA that sends 180 Ringing and 200 OK back to back
// (as sipp's uas and many phones do) must have both reach the caller, in that order.
// sipgo hands every datagram to a goroutine of its own; without respOrder the INVITE
// transaction at the callee's node often sees the 200 first and drops the 180.
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
