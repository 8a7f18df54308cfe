package sipbridge

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/sipua"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(es)
}

// closedWithin reports whether the node closed c (a read ends with EOF or an error other
// than the read deadline) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // an answer (400) before the close
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

func dialFrom(t *testing.T, src, dst string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestTCPDeadlines: a UA-facing TCP connection holding half a request, or idle, or sending
// only random bytes is closed by its deadline; a keep-alive holds an idle connection.
func TestTCPDeadlines(t *testing.T) {
	lim := ConnLimits{MessageTimeout: 300 * time.Millisecond, TCPIdleTimeout: 700 * time.Millisecond}
	n := newTestNode(t, newMemDir(), "pastry", WithConnLimits(lim))
	addr := n.b.TCPAddr()
	half := dialFrom(t, "127.0.0.1", addr)
	_, _ = half.Write([]byte("INVITE sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5;branch=z9hG4bKhalf\r\nFrom: <sip:a@pastry>;tag=1\r\n"))
	idle := dialFrom(t, "127.0.0.1", addr)
	junk := dialFrom(t, "127.0.0.1", addr)
	_, _ = junk.Write(garbage(4000))
	kept := dialFrom(t, "127.0.0.1", addr)
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // RFC 5626 keep-alives every 200 ms
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				_, _ = kept.Write([]byte("\r\n\r\n"))
			}
		}
	}()
	// the node answers the half request 400 when its deadline passes, then closes (after
	// lingering up to 2 s for answers still being written)
	for _, c := range []struct {
		name string
		c    net.Conn
	}{{"half request", half}, {"idle connection", idle}, {"random bytes", junk}} {
		if !closedWithin(c.c, 5*time.Second) {
			t.Errorf("%s still open after %v", c.name, time.Since(start).Round(time.Millisecond))
		}
	}
	if closedWithin(kept, 100*time.Millisecond) {
		t.Errorf("a connection sending keep-alives was closed")
	}
	if st := n.b.Stats(); st.TCPTimedOut < 2 {
		t.Errorf("TCPTimedOut %d, want at least 2", st.TCPTimedOut)
	}
}

// TestTCPCaps: one source holds at most MaxTCPPerSource connections, all sources together
// MaxTCP; the node's file descriptors stay within the budget while 300 connections try, and
// calls still work.
func TestTCPCaps(t *testing.T) {
	lim := ConnLimits{MaxTCPPerSource: 8, MaxTCP: 20}
	n1 := newTestNode(t, newMemDir(), "pastry", WithConnLimits(lim))
	fd0 := openFDs(t)
	var conns []net.Conn
	for i := 0; i < 300; i++ {
		src := fmt.Sprintf("127.0.0.%d", 2+i%30)
		conns = append(conns, dialFrom(t, src, n1.b.TCPAddr()))
	}
	// the client's 300 sockets are in this process too
	eventually(t, 10*time.Second, "the node to hold at most MaxTCP connections", func() bool {
		return n1.b.Stats().TCPConns <= int64(lim.MaxTCP) && n1.b.Stats().TCPRefused >= uint64(300-lim.MaxTCP)
	})
	open := 0
	for _, c := range conns {
		if !closedWithin(c, 20*time.Millisecond) {
			open++
		}
	}
	fd1 := openFDs(t)
	t.Logf("300 connections from 30 sources: %d held by the node, %d refused; fds %d → %d (300 of them the clients')",
		open, n1.b.Stats().TCPRefused, fd0, fd1)
	if open > lim.MaxTCP {
		t.Errorf("%d connections held, cap %d", open, lim.MaxTCP)
	}
	if fd1-fd0 > 300+lim.MaxTCP+16 {
		t.Errorf("file descriptors grew by %d, budget %d", fd1-fd0, 300+lim.MaxTCP+16)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	// per source: 12 from one address, 8 held
	eventually(t, 10*time.Second, "the connections to close", func() bool { return n1.b.Stats().TCPConns == 0 })
	conns = conns[:0]
	for i := 0; i < 12; i++ {
		conns = append(conns, dialFrom(t, "127.0.0.77", n1.b.TCPAddr()))
	}
	open = 0
	for _, c := range conns {
		if !closedWithin(c, 50*time.Millisecond) {
			open++
		}
	}
	if open != lim.MaxTCPPerSource {
		t.Errorf("one source holds %d connections, cap %d", open, lim.MaxTCPPerSource)
	}
	if got := tcpCap(2048, 1024); got != 256 {
		t.Errorf("tcpCap(2048, RLIMIT_NOFILE 1024) = %d, want 256", got)
	}
	if got := tcpCap(2048, 1<<20); got != 2048 {
		t.Errorf("tcpCap(2048, RLIMIT_NOFILE 1M) = %d, want 2048", got)
	}
	n2 := newTestNode(t, n1.loc.dir, "pastry")
	connect(t, n1, n2)
	stillCalls(t, n1, n2)
}

// newPeerHost is a bare libp2p host connected to n.
func newPeerHost(t *testing.T, n *testNode) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return h
}

// resetWithin reports whether the node reset or closed s within d.
func resetWithin(s network.Stream, d time.Duration) bool {
	_ = s.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := s.Read(buf)
		if err == nil {
			continue
		}
		return !errors.Is(err, os.ErrDeadlineExceeded) && !strings.Contains(err.Error(), "deadline")
	}
}

// TestStreamDeadlinesAndCaps: on /hiersip/sip/1.0.0, half messages, idle streams (keep-alive
// lines do not count), random bytes are reset by their deadlines; a peer holds at most
// MaxStreamsPerPeer inbound streams, all peers together MaxStreams; calls between nodes go
// on across the idle deadline, ringing longer than it.
func TestStreamDeadlinesAndCaps(t *testing.T) {
	lim := ConnLimits{MessageTimeout: 300 * time.Millisecond, StreamIdleTimeout: 800 * time.Millisecond, MaxStreamsPerPeer: 2, MaxStreams: 6}
	dir := newMemDir()
	n1 := newTestNode(t, dir, "pastry", WithConnLimits(lim))
	ctx := ctxT(t, time.Minute)
	open := func(h host.Host) network.Stream {
		s, err := h.NewStream(ctx, n1.h.ID(), ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Reset() })
		return s
	}
	h := newPeerHost(t, n1)
	half := open(h)
	_, _ = half.Write([]byte("OPTIONS sip:x@pastry SIP/2.0\r\nVia: SIP/2.0/P2P x;branch=z9hG4bKh\r\n"))
	start := time.Now()
	if !resetWithin(half, 5*time.Second) {
		t.Errorf("half message still open after %v", time.Since(start))
	}
	junk := open(h)
	r := make([]byte, 4096)
	_, _ = rand.Read(r)
	_, _ = junk.Write(r)
	if !resetWithin(junk, 5*time.Second) {
		t.Errorf("random bytes: stream still open")
	}
	idle := open(h)
	_, _ = idle.Write([]byte("\r\n"))
	keep := open(h)
	go func() {
		for i := 0; i < 20; i++ {
			time.Sleep(100 * time.Millisecond)
			if _, err := keep.Write([]byte("\r\n")); err != nil {
				return
			}
		}
	}()
	start = time.Now()
	if !resetWithin(idle, 5*time.Second) || !resetWithin(keep, 5*time.Second) {
		t.Errorf("idle streams still open after %v", time.Since(start))
	}
	if d := time.Since(start); d < lim.StreamIdleTimeout/2 {
		t.Errorf("idle stream closed after %v, before its deadline", d)
	}

	// caps: per peer, then in total (on a node whose streams do not time out meanwhile)
	capped := ConnLimits{MaxStreamsPerPeer: lim.MaxStreamsPerPeer, MaxStreams: lim.MaxStreams}
	n3 := newTestNode(t, newMemDir(), "pastry", WithConnLimits(capped))
	var streams []network.Stream
	for i := 0; i < 6; i++ {
		hp := newPeerHost(t, n3)
		for j := 0; j < 3; j++ {
			s, err := hp.NewStream(ctx, n3.h.ID(), ProtocolID)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Reset() })
			_, _ = s.Write([]byte("\r\n"))
			streams = append(streams, s)
		}
	}
	eventually(t, 5*time.Second, "the node to refuse the streams over its caps", func() bool {
		return n3.b.Stats().StreamsRefused >= uint64(18-capped.MaxStreams)
	})
	var accepted int
	for _, s := range streams {
		if !resetWithin(s, 30*time.Millisecond) {
			accepted++
		}
	}
	st := n3.b.Stats()
	t.Logf("6 peers × 3 streams: %d held, %d refused", accepted, st.StreamsRefused)
	if accepted != capped.MaxStreams || st.Streams != int64(capped.MaxStreams) || st.StreamsRefused != uint64(18-capped.MaxStreams) {
		t.Errorf("%d streams held (node counts %d), %d refused; want %d held", accepted, st.Streams, st.StreamsRefused, capped.MaxStreams)
	}

	// nodes with these deadlines: calls after an idle pause, and a call ringing past the
	// idle deadline
	n2 := newTestNode(t, dir, "pastry", WithConnLimits(lim))
	connect(t, n1, n2)
	stillCalls(t, n1, n2)
	ringing := sipua.WithUAAnswer(sipua.AnswerAuto, 2*lim.StreamIdleTimeout)
	alice := newTestUA(t, "sip:alice2@pastry", n1)
	bob := newTestUA(t, "sip:bob2@pastry", n2, ringing)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	call, err := alice.Call(ctx, "sip:bob2@pastry")
	if err != nil {
		t.Fatalf("a call ringing past the stream idle deadline: %v", err)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
}

// stillCalls checks that n1 and n2 still complete a call.
func stillCalls(t *testing.T, n1, n2 *testNode) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	ring := sipua.WithUAAnswer(sipua.AnswerAuto, 10*time.Millisecond)
	alice := newTestUA(t, "sip:alice@pastry", n1, ring)
	bob := newTestUA(t, "sip:bob@pastry", n2, ring)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	call, err := alice.Call(ctx, "sip:bob@pastry")
	if err != nil {
		t.Fatalf("call after torture: %v", err)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
}
