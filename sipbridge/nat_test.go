package sipbridge

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/sipua"
)

// The phone's private address behind its NAT router, as it writes it into Via and Contact.
const natPrivate = "198.18.5.2:5062"

// TestPhoneBehindNAT: a phone behind NAT (its Via and Contact name a private address, its
// messages come from another one) registers over UDP or TCP and is called from another
// node: the INVITE reaches it at the address its REGISTER came from (UDP: from the node's
// SIP port; TCP: on the phone's own connection), RFC 3581's received and rport are in the
// 200 OK, the caller sees the phone's Contact fixed to that address, and the ACK and BYE
// of the dialog reach the phone too.
func TestPhoneBehindNAT(t *testing.T) {
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			n1, n2 := twoNodes(t)
			ctx := ctxT(t, 30*time.Second)
			addr := n1.b.UDPAddr()
			if tp == "tcp" {
				addr = n1.b.TCPAddr()
			}
			phone := newRawPhone(t, tp, addr)
			res := phone.register("dave", "pastry", natPrivate, 1)
			if tp == "udp" {
				rport, _ := res.Via().Params.Get("rport")
				received, _ := res.Via().Params.Get("received")
				if rport != strconv.Itoa(portOf(phone.addr())) || received != hostOf(phone.addr()) {
					t.Fatalf("200 OK Via %q: want received=%s rport=%d", res.Via().Value(), hostOf(phone.addr()), portOf(phone.addr()))
				}
			}
			if c := res.Contact(); c == nil || uriAddrKey(&c.Address) != natPrivate {
				t.Fatalf("200 OK lists %v, want the contact as registered (%s)", c, natPrivate)
			}

			alice := newTestUA(t, "sip:alice@pastry", n2)
			type result struct {
				c   *sipua.Call
				err error
			}
			done := make(chan result, 1)
			go func() {
				c, err := alice.Call(ctx, "sip:dave@pastry")
				done <- result{c, err}
			}()
			inv := phone.expect("INVITE", 10*time.Second, isRequest(sip.INVITE)).(*sip.Request)
			if got := uriAddrKey(&inv.Recipient); got != natPrivate {
				t.Fatalf("INVITE Request-URI %s, want the registered contact %s", inv.Recipient.String(), natPrivate)
			}
			phone.answer(inv, "dave", natPrivate)
			r := <-done
			if r.err != nil {
				t.Fatalf("call: %v", r.err)
			}
			final := r.c.Responses[len(r.c.Responses)-1]
			if c := final.Contact(); c == nil || uriAddrKey(&c.Address) != uriAddrKey(srcURI(phone.addr())) {
				t.Fatalf("caller sees Contact %v, want the phone's public address %s", c, phone.addr())
			}
			phone.expect("ACK", 10*time.Second, isRequest(sip.ACK))
			hung := make(chan error, 1)
			go func() { hung <- r.c.Hangup(ctx) }()
			bye := phone.expect("BYE", 10*time.Second, isRequest(sip.BYE)).(*sip.Request)
			phone.ok(bye)
			if err := <-hung; err != nil {
				t.Fatalf("BYE: %v", err)
			}
		})
	}
}

// TestNATKeepalive: the node sends OPTIONS to a registered phone behind NAT, at the address
// its REGISTER came from (over TCP on its connection), every WithNATKeepalive; a phone that
// is not behind NAT gets none.
func TestNATKeepalive(t *testing.T) {
	for _, tp := range []string{"udp", "tcp"} {
		t.Run(tp, func(t *testing.T) {
			n := newTestNode(t, newMemDir(), "pastry", WithNATKeepalive(50*time.Millisecond))
			addr := n.b.UDPAddr()
			if tp == "tcp" {
				addr = n.b.TCPAddr()
			}
			natted := newRawPhone(t, tp, addr)
			natted.register("dave", "pastry", natPrivate, 1)
			open := newRawPhone(t, "udp", n.b.UDPAddr())
			open.register("erin", "pastry", open.addr(), 1)
			for i := 0; i < 3; i++ {
				m := natted.expect("keep-alive OPTIONS", 5*time.Second, isRequest(sip.OPTIONS)).(*sip.Request)
				if uriAddrKey(&m.Recipient) != natPrivate || m.From().Address.User != "keepalive" {
					t.Fatalf("keep-alive: %s", m.String())
				}
				natted.ok(m)
			}
			select {
			case m := <-open.got:
				t.Fatalf("a phone not behind NAT got %s", m.String())
			default:
			}
		})
	}
	if err := WithNATKeepalive(-time.Second)(&config{}); err == nil {
		t.Fatal("a negative interval was accepted")
	}
}

// TestNATDialogContact: a UA behind NAT that calls (no registration) gets its Contact fixed
// in the INVITE the callee sees, and the callee's in-dialog request (BYE) reaches it at the
// address it called from.
func TestNATDialogContact(t *testing.T) {
	n1, n2 := twoNodes(t)
	ctx := ctxT(t, 30*time.Second)
	bob := newTestUA(t, "sip:bob@pastry", n2, sipua.WithUAAnswer(sipua.AnswerAuto, 0))
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	phone := newRawPhone(t, "udp", n1.b.UDPAddr())
	phone.send("INVITE sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/UDP " + natPrivate + ";branch=z9hG4bKnatinv;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:dave@pastry>;tag=d1\r\nTo: <sip:bob@pastry>\r\nCall-ID: natdialog\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sip:dave@" + natPrivate + ">\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n")
	ok := phone.expect("200 to INVITE", 10*time.Second, isResponse(sip.INVITE)).(*sip.Response)
	if ok.StatusCode != 200 {
		t.Fatalf("INVITE: %d %s", ok.StatusCode, ok.Reason)
	}
	// ACK along the route set (bob answers the call once it has the ACK), then bob hangs up.
	ack := sip.NewRequest(sip.ACK, ok.Contact().Address)
	ack.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP "+natPrivate+";branch=z9hG4bKnatack;rport"))
	for i := len(ok.GetHeaders("Record-Route")) - 1; i >= 0; i-- {
		ack.AppendHeader(sip.NewHeader("Route", ok.GetHeaders("Record-Route")[i].Value()))
	}
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	ack.AppendHeader(sip.HeaderClone(ok.From()))
	ack.AppendHeader(sip.HeaderClone(ok.To()))
	ack.AppendHeader(sip.HeaderClone(ok.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.ACK})
	ack.SetBody(nil)
	phone.sendMsg(ack)
	var in *sipua.Call
	select {
	case in = <-bob.Incoming():
	case <-ctx.Done():
		t.Fatal("bob never saw the call")
	}
	if c := in.Invite.Contact(); c == nil || uriAddrKey(&c.Address) != uriAddrKey(srcURI(phone.addr())) {
		t.Fatalf("callee sees Contact %v, want the caller's public address %s", c, phone.addr())
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hung := make(chan error, 1)
	go func() { hung <- in.Hangup(hctx) }()
	bye := phone.expect("BYE from the callee", 10*time.Second, isRequest(sip.BYE)).(*sip.Request)
	phone.ok(bye)
	if err := <-hung; err != nil {
		t.Fatalf("BYE: %v", err)
	}
}
