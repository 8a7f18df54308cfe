package p2pnet

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	manet "github.com/multiformats/go-multiaddr/net"
)

const testProto = "/hiersip/test/1.0.0"

func testHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// TestNewStreamTakesThePeersConnection: a's dial to b hangs (b's only known
// address accepts TCP and never answers, as a relayed circuit just cut) while
// b dials a: NewStream returns a stream on b's connection at once, not when
// its dial gives up.
func TestNewStreamTakesThePeersConnection(t *testing.T) {
	a, b := testHost(t), testHost(t)
	b.SetStreamHandler(testProto, func(s network.Stream) { _ = s.Close() })
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
	holeAddr, err := manet.FromNetAddr(hole.Addr())
	if err != nil {
		t.Fatal(err)
	}
	a.Peerstore().AddAddr(b.ID(), holeAddr, peerstore.PermanentAddrTTL)

	type result struct {
		s   network.Stream
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		s, err := NewStream(context.Background(), a, b.ID(), testProto, "test", 10*time.Second)
		done <- result{s, err, time.Now()}
	}()
	select {
	case c := <-accepted: // a is dialling into the hole
		t.Cleanup(func() { _ = c.Close() })
	case <-time.After(5 * time.Second):
		t.Fatal("no dial into the hole")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("NewStream: %v", r.err)
		}
		_ = r.s.Close()
		if took := r.at.Sub(back); took > 2*time.Second {
			t.Fatalf("stream %v after the peer dialled back: NewStream waited for its own dial", took)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("NewStream still waiting 8 s after the peer dialled back")
	}
}
