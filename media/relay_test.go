package media

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/benbjohnson/clock"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"go.uber.org/goleak"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func newHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func newRelay(t testing.TB, h host.Host, opts ...Option) *Relay {
	t.Helper()
	r, err := New(h, append([]Option{WithAddress(loopback), WithPorts(30000, 39999)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func connectHosts(t testing.TB, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// phone is a UDP socket standing for a phone.
type phone struct {
	t testing.TB
	c *net.UDPConn
}

func newPhone(t testing.TB, ip string) *phone {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &phone{t: t, c: c}
}

func (p *phone) addr() netip.AddrPort { return p.c.LocalAddr().(*net.UDPAddr).AddrPort() }

// rtp returns an RTP packet (version 2, PCMU) with sequence number seq.
func rtp(seq uint16) []byte {
	b := make([]byte, 172)
	b[0], b[1] = 0x80, 0
	binary.BigEndian.PutUint16(b[2:], seq)
	return b
}

// rtcpSR returns a minimal RTCP sender report.
func rtcpSR() []byte {
	b := make([]byte, 28)
	b[0], b[1] = 0x80, 200
	binary.BigEndian.PutUint16(b[2:], 6)
	return b
}

func (p *phone) send(to int, pkt []byte) {
	p.t.Helper()
	if _, err := p.c.WriteToUDPAddrPort(pkt, netip.AddrPortFrom(loopback, uint16(to))); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the packets that arrive within d.
func (p *phone) recv(d time.Duration) (n int, last []byte) {
	buf := make([]byte, 2048)
	deadline := time.Now().Add(d)
	for {
		_ = p.c.SetReadDeadline(deadline)
		k, _, err := p.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return n, last
		}
		n++
		last = append(last[:0], buf[:k]...)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pair is a call's media anchored at two relays.
type pair struct {
	ha, hb host.Host
	ra, rb *Relay
	sa, sb *Session
	pa, pb *phone
}

func newPair(t testing.TB, opts ...Option) *pair {
	t.Helper()
	p := &pair{ha: newHost(t), hb: newHost(t)}
	p.ra, p.rb = newRelay(t, p.ha, opts...), newRelay(t, p.hb, opts...)
	connectHosts(t, p.ha, p.hb)
	var err error
	if p.sa, err = p.ra.Open(Key{"call-1", 0}, ""); err != nil {
		t.Fatal(err)
	}
	if p.sb, err = p.rb.Open(Key{"call-1", 0}, p.ha.ID()); err != nil {
		t.Fatal(err)
	}
	if err := p.sa.SetRemote(p.hb.ID()); err != nil {
		t.Fatal(err)
	}
	p.pa, p.pb = newPhone(t, "127.0.0.1"), newPhone(t, "127.0.0.1")
	p.sa.SetPhone(p.pa.addr(), netip.AddrPort{}, loopback)
	p.sb.SetPhone(p.pb.addr(), netip.AddrPort{}, loopback)
	return p
}

func TestRelayForwardsBothWays(t *testing.T) {
	p := newPair(t)
	a, _ := p.sa.Ports()
	b, _ := p.sb.Ports()
	for i := range 50 {
		p.pa.send(a, rtp(uint16(i)))
		p.pb.send(b, rtp(uint16(i)))
	}
	if n, last := p.pb.recv(500 * time.Millisecond); n != 50 || binary.BigEndian.Uint16(last[2:]) != 49 {
		t.Fatalf("phone B received %d of 50 (last %x)", n, last[:4])
	}
	if n, _ := p.pa.recv(200 * time.Millisecond); n != 50 {
		t.Fatalf("phone A received %d of 50", n)
	}
	// RTCP on the RTCP ports.
	_, ac := p.sa.Ports()
	rtcpB := newPhone(t, "127.0.0.1")
	p.sb.SetPhone(p.pb.addr(), rtcpB.addr(), loopback)
	p.pa.send(ac, rtcpSR())
	if n, _ := rtcpB.recv(300 * time.Millisecond); n != 1 {
		t.Fatalf("RTCP: phone B's RTCP port received %d of 1", n)
	}
	st := p.ra.Stats()
	if st.ToPeer != 51 || st.ToPhone != 50 || st.Sessions != 1 {
		t.Fatalf("stats of A: %+v", st)
	}
	in := p.sa.Info()
	if in.Path != "direct" || in.Remote != p.hb.ID().String() || in.ToPeer != 51 || in.ToPhone != 50 {
		t.Fatalf("session info: %+v", in)
	}
}

// TestRelayLatches: the relay sends to the address the phone's packets come from, once it
// has one; before that to the SDP's address.
func TestRelayLatches(t *testing.T) {
	p := newPair(t)
	a, _ := p.sa.Ports()
	b, _ := p.sb.Ports()
	// Phone B's SDP names a port nobody reads; it sends from another one (NAT on the LAN).
	other := newPhone(t, "127.0.0.1")
	p.sb.SetPhone(other.addr(), netip.AddrPort{}, loopback)
	p.pb.send(b, rtp(1))
	waitFor(t, 2*time.Second, "A's phone hears B", func() bool { n, _ := p.pa.recv(20 * time.Millisecond); return n > 0 })
	for i := range 10 {
		p.pa.send(a, rtp(uint16(i)))
	}
	if n, _ := p.pb.recv(300 * time.Millisecond); n != 10 {
		t.Fatalf("the phone behind its NAT received %d of 10", n)
	}
	if n, _ := other.recv(50 * time.Millisecond); n != 0 {
		t.Fatalf("the SDP's address received %d packets after latching", n)
	}
}

// TestRelayDropsStrangers: packets from an IP that is not the phone's are not relayed, and
// nothing is sent to an SDP address on an IP that is not the phone's.
func TestRelayDropsStrangers(t *testing.T) {
	p := newPair(t)
	a, _ := p.sa.Ports()
	stranger := newPhone(t, "127.0.0.2")
	for i := range 5 {
		stranger.send(a, rtp(uint16(i)))
	}
	waitFor(t, 2*time.Second, "5 stranger drops", func() bool { return p.ra.Stats().Dropped[DropStranger] == 5 })
	if n, _ := p.pb.recv(100 * time.Millisecond); n != 0 {
		t.Fatalf("phone B received %d packets of a stranger", n)
	}
	// An SDP naming a victim: nothing goes there until the phone itself sends.
	victim := newPhone(t, "127.0.0.2")
	p.sa.SetPhone(victim.addr(), netip.AddrPort{}, loopback)
	b, _ := p.sb.Ports()
	p.pb.send(b, rtp(1))
	waitFor(t, 2*time.Second, "a not-latched drop", func() bool { return p.ra.Stats().Dropped[DropNotLatched] == 1 })
	if n, _ := victim.recv(50 * time.Millisecond); n != 0 {
		t.Fatalf("the victim received %d packets", n)
	}
}

// TestRelayRefusesOtherPeers: only the session's remote node may feed it; a broken frame
// resets the stream.
func TestRelayRefusesOtherPeers(t *testing.T) {
	p := newPair(t)
	hc := newHost(t)
	connectHosts(t, hc, p.hb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := hc.NewStream(ctx, p.hb.ID(), ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	pkt := rtp(7)
	f := make([]byte, frameHeader, frameHeader+len(pkt))
	putHeader(f, p.sb.ID(), 0, len(pkt))
	f = append(f, pkt...)
	unknown := make([]byte, frameHeader, frameHeader+len(pkt))
	putHeader(unknown, SessionIDOf("other", 0), 0, len(pkt))
	unknown = append(unknown, pkt...)
	if _, err := s.Write(append(f, unknown...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "wrong-peer and unknown-session drops", func() bool {
		st := p.rb.Stats()
		return st.Dropped[DropWrongPeer] == 1 && st.Dropped[DropUnknownSession] == 1
	})
	if n, _ := p.pb.recv(100 * time.Millisecond); n != 0 {
		t.Fatalf("phone B received %d packets of a third node", n)
	}
	if _, err := s.Write([]byte{0, 3, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the broken stream reset", func() bool { return p.rb.Stats().Dropped[DropBadFrame] == 1 })
	_ = s.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stream not reset: %v", err)
	}
}

// TestRelayReopensAfterDisconnect: when the connection between the nodes closes, the media
// continues on a new one.
func TestRelayReopensAfterDisconnect(t *testing.T) {
	p := newPair(t)
	a, _ := p.sa.Ports()
	p.pa.send(a, rtp(0))
	if n, _ := p.pb.recv(300 * time.Millisecond); n != 1 {
		t.Fatalf("before: %d", n)
	}
	for range 3 {
		_ = p.ha.Network().ClosePeer(p.hb.ID())
		waitFor(t, 5*time.Second, "packets again after the disconnection", func() bool {
			p.pa.send(a, rtp(1))
			n, _ := p.pb.recv(20 * time.Millisecond)
			return n > 0
		})
	}
	if st := p.ra.Stats(); st.Reopens == 0 {
		t.Errorf("no reopen counted: %+v", st)
	}
}

// TestLinkQueueDropsOldestAudio: a queue over its bound drops the oldest audio and keeps
// RTCP.
func TestLinkQueueDropsOldestAudio(t *testing.T) {
	r := newRelay(t, newHost(t), WithQueueBytes(64<<10))
	l := newLink(r, "x")
	id := SessionIDOf("c", 0)
	now := time.Now()
	l.enqueue(id, flagControl, rtcpSR(), now)
	audio := make([]byte, 1000)
	for i := range 200 {
		binary.BigEndian.PutUint16(audio, uint16(i))
		l.enqueue(id, 0, audio, now)
	}
	fs := l.take(nil)
	total := 0
	for _, f := range fs {
		total += len(f.b)
	}
	if total > 64<<10 {
		t.Fatalf("queue holds %d bytes, bound 64 KiB", total)
	}
	if !fs[0].ctrl {
		t.Fatalf("RTCP was dropped")
	}
	first := binary.BigEndian.Uint16(fs[1].b[frameHeader:])
	last := binary.BigEndian.Uint16(fs[len(fs)-1].b[frameHeader:])
	if last != 199 || int(last-first)+1 != len(fs)-1 {
		t.Fatalf("kept audio %d..%d in %d frames: not the newest", first, last, len(fs)-1)
	}
	if d := r.Stats().Dropped[DropQueueFull]; d != uint64(200-(len(fs)-1)) {
		t.Fatalf("queue_full drops %d, want %d", d, 200-(len(fs)-1))
	}
}

// TestRelayDropsStaleAudio: packets that waited longer than the maximum delay are dropped,
// RTCP has ten times as long.
func TestRelayDropsStaleAudio(t *testing.T) {
	old := func(c *config) error { c.stamp = func() time.Time { return time.Now().Add(-time.Second) }; return nil }
	p := newPair(t, WithMaxDelay(200*time.Millisecond), old) // every packet looks 1 s old
	a, _ := p.sa.Ports()
	for i := range 5 {
		p.pa.send(a, rtp(uint16(i)))
	}
	p.pa.send(a, rtcpSR()) // multiplexed RTCP on the RTP port
	n, last := p.pb.recv(300 * time.Millisecond)
	if n != 1 || !isRTCP(last) {
		t.Fatalf("phone B received %d packets (last %x), want the RTCP packet only", n, last)
	}
	if d := p.ra.Stats().Dropped[DropStale]; d != 5 {
		t.Fatalf("stale drops %d, want 5", d)
	}
}

func TestRelayLimits(t *testing.T) {
	h := newHost(t)
	r := newRelay(t, h, WithMaxSessions(3), WithMaxSessionsPerPeer(2), WithPorts(31000, 31005))
	other := newHost(t).ID()
	for i := range 2 {
		if _, err := r.Open(Key{"c", i}, other); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Open(Key{"c", 2}, other); !errors.Is(err, ErrPeerFull) {
		t.Fatalf("third session of one peer: %v", err)
	}
	s, err := r.Open(Key{"c", 2}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Open(Key{"c", 3}, ""); !errors.Is(err, ErrFull) {
		t.Fatalf("fourth session: %v", err)
	}
	if again, err := r.Open(Key{"c", 2}, ""); err != nil || again != s {
		t.Fatalf("Open of an open session: %v", err)
	}
	if err := s.SetRemote(h.ID()); err == nil {
		t.Fatal("the relay's own node accepted as remote")
	}
	s.Close()
	s.Close()
	r2 := newRelay(t, newHost(t), WithPorts(31000, 31005))
	for i := range 3 {
		if _, err := r2.Open(Key{"d", i}, ""); err != nil && !errors.Is(err, ErrNoPorts) {
			t.Fatal(err)
		}
	}
	if _, err := r2.Open(Key{"d", 9}, ""); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("with every port taken: %v", err)
	}
	for _, bad := range []Option{WithPorts(0, 10), WithPorts(5000, 4000), WithPorts(5001, 5001), WithMaxSessions(0),
		WithMaxSessionsPerPeer(0), WithTimeouts(0, time.Second), WithMaxDelay(0), WithQueueBytes(10), WithLogger(nil),
		WithAddress(netip.Addr{})} {
		if _, err := New(h, bad); !errors.Is(err, ErrBadOption) {
			t.Errorf("bad option accepted: %v", err)
		}
	}
	if _, err := New(nil); !errors.Is(err, ErrNoHost) {
		t.Errorf("nil host: %v", err)
	}
}

func TestRelayIdleTimeout(t *testing.T) {
	p := newPair(t, WithTimeouts(300*time.Millisecond, time.Hour))
	p.sb.SetHold(true)
	waitFor(t, 5*time.Second, "the idle session closed", func() bool { return p.ra.Stats().Sessions == 0 })
	if p.sb.Closed() {
		t.Fatal("the session on hold was closed by the idle timeout")
	}
	if st := p.ra.Stats(); st.Sessions != 0 || st.SessionsIdle != 1 {
		t.Fatalf("stats: %+v", st)
	}
	// Its ports are free again.
	rtp, _ := p.sa.Ports()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: rtp})
	if err != nil {
		t.Fatalf("port %d still taken: %v", rtp, err)
	}
	c.Close()
}

// TestRelayTimeoutsOnItsClock: the idle and hold timeouts follow the relay's clock: a
// session without packets closes once its idle timeout has passed on the clock, and not
// before, however little real time passes; one on hold stays for its hold timeout.
func TestRelayTimeoutsOnItsClock(t *testing.T) {
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	const idle = 30 * time.Second
	p := newPair(t, WithTimeouts(idle, time.Hour), WithClock(clk))
	p.sb.SetHold(true)
	for moved := time.Duration(0); moved < idle-2*janitorEvery; moved += janitorEvery {
		clk.Add(janitorEvery)
	}
	if st := p.ra.Stats(); st.Sessions != 1 || st.SessionsIdle != 0 {
		t.Fatalf("closed before its idle timeout on the clock: %+v", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.ra.Stats().Sessions != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the idle session still open %v after it opened on the clock", clk.Now().Sub(p.sa.Info().Opened))
		}
		clk.Add(janitorEvery / 4)
	}
	if gone := clk.Now().Sub(p.sa.Info().Opened); gone < idle {
		t.Fatalf("closed %v after it opened on the clock, idle timeout %v", gone, idle)
	}
	if p.sb.Closed() || p.ra.Stats().SessionsIdle != 1 {
		t.Fatalf("the session on hold closed (%v), or idle closes %d", p.sb.Closed(), p.ra.Stats().SessionsIdle)
	}
}

// TestRelayCloseLeavesNothing: after a call's sessions close and the relays close, no
// goroutine or socket is left; a second Close says closed.
func TestRelayCloseLeavesNothing(t *testing.T) {
	t.Run("warm-up", func(t *testing.T) { newPair(t) })
	ignore := goleak.IgnoreCurrent()
	var ports []int
	t.Run("call", func(t *testing.T) {
		p := newPair(t)
		a, _ := p.sa.Ports()
		p.pa.send(a, rtp(1))
		if n, _ := p.pb.recv(300 * time.Millisecond); n != 1 {
			t.Fatalf("received %d", n)
		}
		x, y := p.sa.Ports()
		ports = append(ports, x, y)
		p.sa.Close()
		p.sb.Close()
		if err := p.ra.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.ra.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := p.ra.Open(Key{"x", 0}, ""); !errors.Is(err, ErrClosed) {
			t.Fatalf("Open after Close: %v", err)
		}
		_ = p.rb.Close()
		_ = p.ha.Close()
		_ = p.hb.Close()
	})
	for _, port := range ports {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Fatalf("port %d still taken: %v", port, err)
		}
		c.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := goleak.Find(ignore)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var _ network.Stream // keep the import for helpers

// netipLoopback is a loopback address nobody listens on (the discard port).
func netipLoopback() netip.AddrPort { return netip.AddrPortFrom(loopback, 9) }

// TestRelayReopensWhenThePeerDialsBack: after a disconnection the relay's dial to the
// peer hangs (here on an address that accepts TCP and never answers, as a relayed
// circuit just cut) while the peer dials back: the audio resumes on the peer's
// connection at once, not when the dial gives up (dialTimeout, 5 s).
func TestRelayReopensWhenThePeerDialsBack(t *testing.T) {
	p := newPair(t)
	a, _ := p.sa.Ports()
	p.pa.send(a, rtp(0))
	if n, _ := p.pb.recv(300 * time.Millisecond); n != 1 {
		t.Fatalf("before: %d", n)
	}
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hole.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	t.Cleanup(func() {
		for {
			select {
			case c := <-accepted:
				_ = c.Close()
			default:
				return
			}
		}
	})
	_ = p.ha.Network().ClosePeer(p.hb.ID())
	waitFor(t, 5*time.Second, "the disconnection", func() bool {
		return p.ha.Network().Connectedness(p.hb.ID()) != network.Connected
	})
	p.ha.Peerstore().ClearAddrs(p.hb.ID())
	holeAddr, err := manet.FromNetAddr(hole.Addr())
	if err != nil {
		t.Fatal(err)
	}
	p.ha.Peerstore().AddAddr(p.hb.ID(), holeAddr, peerstore.PermanentAddrTTL)

	p.pa.send(a, rtp(1)) // the link redials: into the hole
	var held net.Conn
	select {
	case held = <-accepted:
		accepted <- held
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not redial")
	}
	connectHosts(t, p.hb, p.ha) // the peer dials back
	back := time.Now()
	waitFor(t, 4*time.Second, "audio on the peer's connection", func() bool {
		p.pa.send(a, rtp(2))
		n, _ := p.pb.recv(20 * time.Millisecond)
		return n > 0
	})
	if took := time.Since(back); took > 2*time.Second {
		t.Fatalf("audio resumed %v after the peer dialled back: the relay waited for its own dial", took)
	}
}
