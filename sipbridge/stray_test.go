package sipbridge

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
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
