package sipbridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hiersip/hiersip/siptls"
	"github.com/hiersip/hiersip/sipua"
)

// wsPhone is a SIP-over-WebSocket client as a browser phone is one (RFC 7118): a made-up
// .invalid host in Via and Contact, every message one text frame.
type wsPhone struct {
	t    testing.TB
	conn net.Conn
	in   chan sip.Message
	host string
	aor  string
	tp   string // "WS" or "WSS"
}

func dialWSPhone(t testing.TB, addr, aor string, conf *tls.Config) *wsPhone {
	t.Helper()
	d := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: conf, Timeout: 5 * time.Second}
	scheme, tp := "ws", "WS"
	if conf != nil {
		scheme, tp = "wss", "WSS"
	}
	conn, _, hs, err := d.Dial(context.Background(), scheme+"://"+addr)
	if err != nil {
		t.Fatalf("dialling %s://%s: %v", scheme, addr, err)
	}
	if hs.Protocol != "sip" {
		t.Fatalf("subprotocol %q, want sip", hs.Protocol)
	}
	p := &wsPhone{t: t, conn: conn, in: make(chan sip.Message, 16), host: sip.GenerateTagN(10) + ".invalid", aor: aor, tp: tp}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(p.in)
		for {
			data, op, err := wsutil.ReadServerData(conn)
			if err != nil {
				return
			}
			if op != ws.OpText && op != ws.OpBinary {
				continue
			}
			m, err := sip.ParseMessage(data)
			if err != nil {
				t.Errorf("unparsable message from the node: %v\n%s", err, data)
				return
			}
			p.in <- m
		}
	}()
	t.Cleanup(func() { _ = conn.Close(); <-done })
	return p
}

func (p *wsPhone) send(s string) {
	p.t.Helper()
	s = strings.ReplaceAll(strings.TrimLeft(s, "\n"), "\n", "\r\n")
	if err := wsutil.WriteClientText(p.conn, []byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *wsPhone) sendMsg(m sip.Message) {
	p.t.Helper()
	if err := wsutil.WriteClientText(p.conn, []byte(m.String())); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next message that is not a 100 Trying.
func (p *wsPhone) next(d time.Duration) sip.Message {
	p.t.Helper()
	tm := time.NewTimer(d)
	defer tm.Stop()
	for {
		select {
		case m, ok := <-p.in:
			if !ok {
				p.t.Fatal("the node closed the WebSocket")
			}
			if r, ok := m.(*sip.Response); ok && r.StatusCode == 100 {
				continue
			}
			return m
		case <-tm.C:
			p.t.Fatal("no message from the node")
		}
	}
}

func (p *wsPhone) contact() string {
	return "<sip:" + sip.GenerateTagN(6) + "@" + p.host + ";transport=ws>"
}

func (p *wsPhone) register(domain string) *sip.Response {
	p.t.Helper()
	p.send(fmt.Sprintf(`
REGISTER sip:%s SIP/2.0
Via: SIP/2.0/%s %s;branch=z9hG4bK%s
Max-Forwards: 70
To: <%s>
From: <%s>;tag=%s
Call-ID: %s
CSeq: 1 REGISTER
Contact: %s;expires=300
Content-Length: 0

`, domain, p.tp, p.host, sip.GenerateTagN(12), p.aor, p.aor, sip.GenerateTagN(8), sip.GenerateTagN(16), p.contact()))
	m := p.next(10 * time.Second)
	res, ok := m.(*sip.Response)
	if !ok {
		p.t.Fatalf("answer to REGISTER: %v", m)
	}
	return res
}

// TestWSSPhone: a phone registers over WSS (and over plain WS) with an .invalid contact;
// a UA at another node calls it: the INVITE, ACK and BYE reach it on its own WebSocket,
// its answers go back to the caller.
func TestWSSPhone(t *testing.T) {
	conf, caFile := tlsConf(t)
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	dir := newMemDir()
	n1 := newTestNode(t, dir, "pastry")
	n2 := newTestNode(t, dir, "pastry", WithWSS("127.0.0.1:0", conf), WithWS("127.0.0.1:0"))
	connect(t, n1, n2)
	ring := sipua.WithUAAnswer(sipua.AnswerAuto, 10*time.Millisecond)
	alice := newTestUA(t, "sip:alice@pastry", n1, ring)
	ctx := ctxT(t, 60*time.Second)
	if _, err := alice.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, addr, aor string
		conf            *tls.Config
	}{
		{"WSS", n2.b.WSSAddr(), "sip:web@pastry", &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}},
		{"WS", n2.b.WSAddr(), "sip:web2@pastry", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ph := dialWSPhone(t, tc.addr, tc.aor, tc.conf)
			if res := ph.register("pastry"); res.StatusCode != 200 {
				t.Fatalf("REGISTER over %s: %d %s", tc.name, res.StatusCode, res.Reason)
			}
			reg := n2.b.reg.snapshotContacts(tc.aor)
			if len(reg) != 1 || reg[0].tp != strings.ToLower(tc.name) || !reg[0].nat {
				t.Fatalf("contact: %+v", reg)
			}
			type result struct {
				c   *sipua.Call
				err error
			}
			out := make(chan result, 1)
			go func() {
				c, err := alice.Call(ctx, tc.aor)
				out <- result{c, err}
			}()
			inv, ok := ph.next(10 * time.Second).(*sip.Request)
			if !ok || inv.Method != sip.INVITE {
				t.Fatalf("want INVITE, got %v", inv)
			}
			if v := inv.Via(); v == nil || v.Transport != tc.name {
				t.Fatalf("the node's Via names %v, want transport %s", v, tc.name)
			}
			if !strings.Contains(inv.Recipient.Host, ".invalid") {
				t.Fatalf("Request-URI %s is not the registered .invalid contact", inv.Recipient.String())
			}
			ok200 := sip.NewResponseFromRequest(inv, 200, "OK", []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40100 RTP/AVP 0\r\n"))
			ok200.To().Params.Add("tag", sip.GenerateTagN(8))
			ok200.AppendHeader(sip.NewHeader("Contact", ph.contact()))
			ok200.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			ph.sendMsg(ok200)
			r := <-out
			if r.err != nil {
				t.Fatalf("calling the %s phone: %v", tc.name, r.err)
			}
			if ack, ok := ph.next(10 * time.Second).(*sip.Request); !ok || ack.Method != sip.ACK {
				t.Fatalf("want ACK, got %v", ack)
			}
			hung := make(chan error, 1)
			go func() { hung <- r.c.Hangup(ctx) }()
			bye, ok := ph.next(10 * time.Second).(*sip.Request)
			if !ok || bye.Method != sip.BYE {
				t.Fatalf("want BYE, got %v", bye)
			}
			ph.sendMsg(sip.NewResponseFromRequest(bye, 200, "OK", nil))
			if err := <-hung; err != nil {
				t.Fatalf("BYE: %v", err)
			}
		})
	}
}

// TestWSNeedsSubprotocol: a WebSocket client that does not offer the sip subprotocol is
// refused at the handshake; keep-alive pings are answered.
func TestWSNeedsSubprotocol(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry", WithWS("127.0.0.1:0"))
	d := ws.Dialer{Timeout: 5 * time.Second}
	_, _, _, err := d.Dial(context.Background(), "ws://"+n.b.WSAddr())
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != 400 {
		t.Fatalf("handshake without the sip subprotocol: %v, want status 400", err)
	}
	// With it: a ping gets a pong.
	d.Protocols = []string{"sip"}
	conn, _, _, err := d.Dial(context.Background(), "ws://"+n.b.WSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewPingFrame([]byte("hi")))); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := ws.ReadHeader(conn)
	if err != nil || h.OpCode != ws.OpPong {
		t.Fatalf("answer to a ping: %+v %v", h, err)
	}
}

// TestWSKeepalive: the node pings an idle WebSocket connection at a third of the idle
// timeout; a client that answers (gobwas answers pings itself) keeps its connection
// beyond the idle timeout and can still register on it. A TCP connection that says
// nothing for as long is closed.
func TestWSKeepalive(t *testing.T) {
	idle := 900 * time.Millisecond
	n := newTestNode(t, newMemDir(), "pastry", WithWS("127.0.0.1:0"), WithConnLimits(ConnLimits{TCPIdleTimeout: idle}))
	ph := dialWSPhone(t, n.b.WSAddr(), "sip:idle@pastry", nil)
	// the phone's reader answers pings with pongs (wsutil.ReadServerData)
	time.Sleep(3 * idle) // idle on purpose: the pings must keep the connection
	if res := ph.register("pastry"); res.StatusCode != 200 {
		t.Fatalf("REGISTER after %v idle: %d", 3*idle, res.StatusCode)
	}
	tc, err := net.Dial("tcp", n.b.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetReadDeadline(time.Now().Add(10 * idle))
	if _, err := tc.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("an idle TCP connection stayed open: %v", err)
	}
}

// TestTLSClientAuthRequire: with client certificates required, a client without one
// fails the handshake and sends nothing.
func TestTLSClientAuthRequire(t *testing.T) {
	dir := t.TempDir()
	cert, err := siptls.Certificate(siptls.WithSelfSigned(dir, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, siptls.CertFile)
	conf, err := siptls.Server(cert, siptls.WithClientAuth(siptls.ClientAuthRequire, caFile))
	if err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, newMemDir(), "pastry", WithTLS("127.0.0.1:0", conf))
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", n.b.TLSAddr(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err == nil {
		// TLS 1.3: the client learns of the refusal at its first read
		_, _ = c.Write([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client without a certificate: %v, want a certificate error", err)
	}
	// With the node's own certificate as client certificate: admitted.
	c, err = tls.Dial("tcp", n.b.TLSAddr(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
}
