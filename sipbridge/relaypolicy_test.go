package sipbridge

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/testenv"
	"github.com/hiersip/hiersip/sipua"
)

// udpAsk sends req (with %[1]s for pc's address) from pc to dst and returns the final
// answer's status line ("" when none came within 3 s).
func udpAsk(t *testing.T, pc net.PacketConn, dst string, req string) string {
	t.Helper()
	addr, _ := net.ResolveUDPAddr("udp", dst)
	if _, err := pc.WriteTo([]byte(fmt.Sprintf(req, pc.LocalAddr().String())), addr); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(3 * time.Second)
	for {
		_ = pc.SetReadDeadline(deadline)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return ""
		}
		if code := statusOf(buf[:n]); code >= 200 {
			line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
			return line
		}
	}
}

const relayOptions = "OPTIONS %s SIP/2.0\r\nVia: SIP/2.0/UDP %%[1]s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n" +
	"From: <sip:mallory@pastry>;tag=m%s\r\nTo: <%s>\r\nCall-ID: relay-%s\r\nCSeq: 1 OPTIONS\r\n%sContent-Length: 0\r\n\r\n"

// TestOpenRelayRefused: a UA of a node without users cannot make the node send SIP to an
// address that is no user agent of the node (the Request-URI or a Route naming a host and
// port): 403, and nothing arrives there. A registered contact is still reached.
func TestOpenRelayRefused(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry")
	victim, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 65535)
		for {
			k, _, err := victim.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- string(buf[:k])
		}
	}()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	target := "sip:anything@" + victim.LocalAddr().String()
	for i, c := range []struct{ ruri, extra string }{
		{target, ""},
		{"sip:" + victim.LocalAddr().String(), ""},
		{"sip:bob@pastry", "Route: <" + target + ";lr>\r\n"},
	} {
		id := fmt.Sprint(i)
		line := udpAsk(t, pc, n.b.UDPAddr(), fmt.Sprintf(relayOptions, c.ruri, id, id, c.ruri, id, c.extra))
		if !strings.Contains(line, "403") {
			t.Errorf("OPTIONS %s %q: answered %q, want 403", c.ruri, c.extra, line)
		}
	}
	select {
	case m := <-got:
		t.Fatalf("the node relayed to an arbitrary address:\n%s", m)
	case <-time.After(300 * time.Millisecond):
	}
	if st := n.b.Stats(); st.RelayRefused < 3 {
		t.Errorf("RelayRefused %d, want 3", st.RelayRefused)
	}

	// a registered contact is reached
	ctx := ctxT(t, 10*time.Second)
	bob := newTestUA(t, "sip:bob@pastry", n)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	ct := bob.Contact()
	line := udpAsk(t, pc, n.b.UDPAddr(), fmt.Sprintf(relayOptions, ct.String(), "c", "c", ct.String(), "c", ""))
	if !strings.Contains(line, "200") {
		t.Fatalf("OPTIONS to a registered contact: %q, want 200", line)
	}
}

// localNonLoopback returns an address of this host that is not loopback, for a source the
// node does not trust.
func localNonLoopback(t *testing.T) netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
				return p.Addr()
			}
		}
	}
	testenv.Unavailable(t, "an IPv4 address that is not loopback")
	return netip.Addr{}
}

// TestUntrustedUARefused: a node without users refuses user agents outside loopback and its
// trusted networks (REGISTER and INVITE alike), serves those inside, and says so at start.
func TestUntrustedUARefused(t *testing.T) {
	ip := localNonLoopback(t)
	listen := netip.AddrPortFrom(ip, 0).String()
	w := &countingWriter{}
	log := slog.New(slog.NewTextHandler(w, nil))
	open := newTestNode(t, newMemDir(), "pastry", WithListen(listen), WithLogger(log))
	trusting := newTestNode(t, newMemDir(), "pastry", WithListen(listen), WithTrustedNetworks(netip.PrefixFrom(ip, 32)))
	if !strings.Contains(w.String(), "serving only user agents on loopback and trusted networks") {
		t.Errorf("no start line about trusted networks in:\n%s", w.String())
	}
	ctx := ctxT(t, 10*time.Second)
	for _, c := range []struct {
		n    *testNode
		want int
	}{{open, 403}, {trusting, 200}} {
		ua := newTestUA(t, "sip:carol@pastry", c.n, sipua.WithUAListen(netip.AddrPortFrom(ip, 0).String()))
		res, err := ua.Register(ctx, 0)
		if res == nil {
			t.Fatalf("REGISTER: %v", err)
		}
		if res.StatusCode != c.want {
			t.Errorf("REGISTER from %v: %d %s, want %d", ip, res.StatusCode, res.Reason, c.want)
		}
		if c.want == 403 && !strings.Contains(res.Reason, "trusted networks") {
			t.Errorf("reason %q does not name trusted networks", res.Reason)
		}
		pc, err := net.ListenPacket("udp", netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		line := udpAsk(t, pc, c.n.b.UDPAddr(), fmt.Sprintf(relayOptions, "sip:carol@pastry", "u", "u", "sip:carol@pastry", "u", ""))
		_ = pc.Close()
		if c.want == 403 && !strings.Contains(line, "403") {
			t.Errorf("OPTIONS from an untrusted UA: %q, want 403", line)
		}
	}
}
