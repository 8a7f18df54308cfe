package sipbridge

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/sipua"
)

// rawRegister is a REGISTER for carol@pastry naming n contacts (host 127.0.0.1, ports from
// port0), or none (a query).
func rawRegister(via string, seq, n, port0 int) string {
	var cs strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&cs, "Contact: <sip:carol@127.0.0.1:%d>\r\n", port0+i)
	}
	return fmt.Sprintf("REGISTER sip:pastry SIP/2.0\r\nVia: %s;branch=z9hG4bKcap%d\r\nMax-Forwards: 70\r\n"+
		"From: <sip:carol@pastry>;tag=c%d\r\nTo: <sip:carol@pastry>\r\nCall-ID: cap-call\r\nCSeq: %d REGISTER\r\n"+
		"%sExpires: 600\r\nContent-Length: 0\r\n\r\n", via, seq, seq, seq, cs.String())
}

// TestContactCaps: a REGISTER naming more contacts than an AOR may hold is refused whole
// (403, over TCP as over UDP), so is one that would take the AOR over the cap; the AOR then
// still works; over UDP the answer to a query stays within twice the request's size.
func TestContactCaps(t *testing.T) {
	dir := newMemDir()
	n := newTestNode(t, dir, "pastry")
	maxC := DefaultMaxContacts

	// over TCP, 1500 contacts at once
	c, err := net.Dial("tcp", n.b.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(rawRegister("SIP/2.0/TCP "+c.LocalAddr().String(), 1, 1500, 20000))); err != nil {
		t.Fatal(err)
	}
	fr := newFrameReader(c, 1<<20)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	data, err := fr.next()
	if err != nil {
		t.Fatal(err)
	}
	if code := statusOf(data); code != 403 || !strings.Contains(string(data), "too many contacts") {
		t.Fatalf("REGISTER with 1500 contacts over TCP: %.80q, want 403 too many contacts", data)
	}

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	via := "SIP/2.0/UDP " + pc.LocalAddr().String()
	seq := 10
	ask := func(req string) []byte {
		t.Helper()
		dst, _ := net.ResolveUDPAddr("udp", n.b.UDPAddr())
		if _, err := pc.WriteTo([]byte(req), dst); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65535)
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return buf[:k]
	}
	// up to the cap one by one, then one more
	for i := 0; i < maxC; i++ {
		seq++
		if code := statusOf(ask(rawRegister(via, seq, 1, 30000+i))); code != 200 {
			t.Fatalf("contact %d: %d", i+1, code)
		}
	}
	seq++
	if res := ask(rawRegister(via, seq, 1, 31000)); statusOf(res) != 403 {
		t.Fatalf("contact %d: %.60q, want 403", maxC+1, res)
	}
	seq++
	if res := ask(rawRegister(via, seq, maxC+1, 32000)); statusOf(res) != 403 {
		t.Fatalf("%d contacts in one REGISTER over UDP: %.60q, want 403", maxC+1, res)
	}
	if b := n.loc.binding("sip:carol@pastry"); b == nil || len(b.Contacts) != maxC {
		t.Fatalf("binding after the refusals: %+v", b)
	}
	// the AOR still works: a refresh of a contact, and a query, small over UDP
	seq++
	if code := statusOf(ask(rawRegister(via, seq, 1, 30000))); code != 200 {
		t.Fatalf("refresh after the refusals: %d", code)
	}
	seq++
	query := rawRegister(via, seq, 0, 0)
	res := ask(query)
	m, err := sip.ParseMessage(res)
	if err != nil || statusOf(res) != 200 {
		t.Fatalf("query: %v %.60q", err, res)
	}
	listed := len(m.(*sip.Response).GetHeaders("Contact"))
	t.Logf("UDP query of %d bytes with %d contacts registered: %d bytes back, %d contacts listed", len(query), maxC, len(res), listed)
	if len(res) > max(2*len(query), udpAnswerFloor) {
		t.Errorf("answer of %d bytes to a %d-byte query over UDP", len(res), len(query))
	}
	if n.b.Stats().ContactsRefused != 3 {
		t.Errorf("ContactsRefused %d, want 3", n.b.Stats().ContactsRefused)
	}
	// and a call to it is still delivered
	ctx := ctxT(t, 10*time.Second)
	carol := newTestUA(t, "sip:carol@pastry", n, sipua.WithUAAnswer(sipua.AnswerAuto, 0))
	seq++
	if code := statusOf(ask(strings.Replace(rawRegister(via, seq, 0, 0), "Expires: 600", "Contact: *\r\nExpires: 0", 1))); code != 200 {
		t.Fatalf("unregister all: %d", code)
	}
	if _, err := carol.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	alice := newTestUA(t, "sip:alice@pastry", n)
	call, err := alice.Call(ctx, "sip:carol@pastry")
	if err != nil {
		t.Fatalf("call to the AOR after the refusals: %v", err)
	}
	_ = call.Hangup(ctx)
}
