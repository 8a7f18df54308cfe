package sipbridge

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/hiersip/hiersip/sipua"
	"github.com/libp2p/go-libp2p"
)

// TestNewBusyPort: a bridge whose UDP or TCP port is taken fails with an error naming
// the address, never panics, and leaves nothing open: not the other listener, not the
// host's stream handler of a bridge already running on it.
func TestNewBusyPort(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	loc := &memLocator{dir: newMemDir(), domain: "pastry", h: h}

	busyUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyUDP.Close()
	busyTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyTCP.Close()
	// A free TCP port for the UDP case, and a free UDP port for the TCP case.
	freeTCP, freeUDP := freePort(t, "tcp"), freePort(t, "udp")

	for _, tc := range []struct {
		name, udp, tcp, want string
	}{
		{"udp", busyUDP.LocalAddr().String(), freeTCP, "listen udp " + busyUDP.LocalAddr().String()},
		{"tcp", freeUDP, busyTCP.Addr().String(), "listen tcp " + busyTCP.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(h, loc, WithUDP(tc.udp), WithTCP(tc.tcp), WithLogger(testLogger(t)))
			if err == nil {
				_ = b.Close()
				t.Fatal("New on a busy port succeeded")
			}
			if b != nil {
				t.Fatalf("New returned a bridge with its error %v", err)
			}
			if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q (address in use)", err, tc.want)
			}
			// What New opened before failing is closed again: both ports can be bound.
			for _, a := range []struct{ net, addr string }{{"udp", tc.udp}, {"tcp", tc.tcp}} {
				if a.addr == busyUDP.LocalAddr().String() || a.addr == busyTCP.Addr().String() {
					continue
				}
				if err := bindOnce(a.net, a.addr); err != nil {
					t.Errorf("after the failed New, %s %s stays bound: %v", a.net, a.addr, err)
				}
			}
		})
	}

	// A second bridge failing on a host that already runs one leaves the first's
	// stream handler in place.
	first, err := New(h, loc, WithListen("127.0.0.1:0"), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := New(h, loc, WithUDP(first.UDPAddr()), WithTCP(""), WithLogger(testLogger(t))); err == nil {
		t.Fatal("second bridge on the first's UDP port succeeded")
	}
	found := false
	for _, p := range h.Mux().Protocols() {
		found = found || p == ProtocolID
	}
	if !found {
		t.Fatal("the failed bridge removed the running bridge's stream handler")
	}
}

func freePort(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func bindOnce(network, addr string) error {
	if network == "udp" {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		return pc.Close()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// TestNoProcessWideState: importing the package and running bridges changes none of
// sipgo's package state (its package logger, sip.UDPMTUSize): the bridge has transports of
// its own, and a program embedding it keeps sipgo as it configured it.
func TestNoProcessWideState(t *testing.T) {
	if sip.UDPMTUSize != 1500 {
		t.Fatalf("sip.UDPMTUSize is %d, sipgo's default 1500: something set it", sip.UDPMTUSize)
	}
	if sip.DefaultLogger() != slog.Default() {
		t.Fatal("sipgo's package logger was set")
	}
	n1, n2 := twoNodes(t)
	ctx := ctxT(t, 20*time.Second)
	bob := newTestUA(t, "sip:bob@pastry", n2, sipua.WithUAAnswer(sipua.AnswerAuto, 0))
	alice := newTestUA(t, "sip:alice@pastry", n1)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "bob's binding", func() bool { return n1.loc.binding("sip:bob@pastry") != nil })
	call, err := alice.Call(ctx, "sip:bob@pastry")
	if err != nil {
		t.Fatal(err)
	}
	_ = call.Hangup(ctx)
	if sip.UDPMTUSize != 1500 || sip.DefaultLogger() != slog.Default() {
		t.Fatal("running bridges changed sipgo's package state")
	}
}

// TestLargeUDPMessages: a request or response over 1300 bytes (inter-domain INVITEs carry
// several Vias and Record-Routes and a softphone's SDP) goes to a UA over UDP all the same,
// as one datagram that IP fragments, as Kamailio sends it.
func TestLargeUDPMessages(t *testing.T) {
	n1, n2 := twoNodes(t)
	ctx := ctxT(t, 30*time.Second)
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
	body := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n" +
		strings.Repeat("a=x-filler:"+strings.Repeat("z", 100)+"\r\n", 30)
	got := make(chan int, 1)
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
			select {
			case got <- n:
			default:
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", []byte(body))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			res.To().Params.Add("tag", "callee")
			_, _ = callee.WriteTo([]byte(res.String()), from)
		}
	}()
	port := caller.LocalAddr().(*net.UDPAddr).Port
	invite := fmt.Sprintf("INVITE sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-big\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:alice@pastry>;tag=a\r\nTo: <sip:bob@pastry>\r\nCall-ID: big@test\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:alice@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", port, port, len(body), body)
	addr, _ := net.ResolveUDPAddr("udp", n1.b.UDPAddr())
	if _, err := caller.WriteTo([]byte(invite), addr); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	for {
		dl, _ := ctx.Deadline()
		_ = caller.SetReadDeadline(dl)
		n, _, err := caller.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no 200 OK at the caller: %v", err)
		}
		msg, err := sip.ParseMessage(buf[:n])
		if res, ok := msg.(*sip.Response); err == nil && ok && res.StatusCode == 200 {
			if n <= 1300 {
				t.Fatalf("200 OK of %d bytes, want over 1300", n)
			}
			break
		}
	}
	if n := <-got; n <= 1300 {
		t.Fatalf("INVITE of %d bytes at the callee, want over 1300", n)
	}
}
