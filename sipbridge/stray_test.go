package sipbridge

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestStrayToStalledTCPUA: a peer's stream reader never waits for a UA. Stray 2xx
// responses (retransmissions the node forwards statelessly) from a peer, for a UA whose
// TCP connection reads nothing, fill that connection; the stream they came on still
// serves the peer's next request at once (before, each write held the reader until its
// 10 s deadline, stalling every dialog with the peer).
func TestStrayToStalledTCPUA(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry")
	ctx := ctxT(t, 30*time.Second)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	ua, err := d.DialContext(ctx, "tcp", n.b.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close() // never read
	uaAddr := ua.LocalAddr().(*net.TCPAddr).AddrPort()
	uaAddr = netip.AddrPortFrom(uaAddr.Addr().Unmap(), uaAddr.Port())
	eventually(t, 5*time.Second, "the node holding the UA's connection", func() bool { return n.b.tcpConn(uaAddr) != nil })

	rp := newRawPeer(t, n)
	s := rp.open(ctx)
	body := strings.Repeat("x", 32<<10)
	var burst strings.Builder
	const strays = 160 // 5 MB: more than the connection's buffers hold (tcp_wmem's 4 MB at most)
	for i := range strays {
		fmt.Fprintf(&burst, "SIP/2.0 200 OK\r\nVia: SIP/2.0/P2P %s;branch=z9hG4bKstray%d\r\n"+
			"Via: SIP/2.0/TCP %s;branch=z9hG4bKua%d\r\nTo: <sip:b@pastry>;tag=b\r\nFrom: <sip:a@pastry>;tag=a\r\n"+
			"Call-ID: stray%d\r\nCSeq: 1 INVITE\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
			n.b.selfStr, i, uaAddr, i, i, len(body), body)
	}
	burst.WriteString(rawReq("after", "70", "after", "Content-Length: 0\r\n"))
	start := time.Now()
	written := make(chan error, 1)
	go func() { _, err := s.Write([]byte(burst.String())); written <- err }() // the stream's window may hold it
	rp.expect("the peer's request after the strays answered", status(404))    // within 5 s
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("the stream reader answered after %v: it waited for the stalled UA", el)
	}
}

// TestTxCloseWhileSending: a Close that ends the client transactions races no request
// still being sent (run with -race): a transaction is complete before it is published,
// and one the Close ended arms no timer.
func TestTxCloseWhileSending(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry")
	bb := n.b
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	to := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	msg, err := bb.parser.ParseSIP(benchInvite("z9hG4bK-close", "close@test", int(to.Port())))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	for round := range 100 { // layers of their own: the bridge's stays open
		l := newTxLayer(bb)
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Go(func() {
				for i := range 20 {
					fwd := copyRequest(req)
					via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1",
						Port: bb.udpPort, Params: sip.NewParams()}
					via.Params.Add("branch", fmt.Sprintf("z9hG4bKclose%d-%d-%d", round, g, i))
					fwd.PrependHeader(via)
					if _, err := l.request(path{kind: tpUDP, addr: to}, fwd); err != nil {
						return // closed
					}
				}
			})
		}
		for { // close while requests are being sent
			if _, c := l.size(); c >= 3 {
				break
			}
			runtime.Gosched()
		}
		l.close(ErrClosed)
		wg.Wait()
		l.endAll(ErrClosed)
		if s, c := l.size(); s != 0 || c != 0 {
			t.Fatalf("%d server and %d client transactions left", s, c)
		}
	}
}
