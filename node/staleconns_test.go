package node

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

func staleHost(t *testing.T, key crypto.PrivKey) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// TestStaleConnClosed: a peer connects again with its identity from another process (a
// restart) while this node still holds a connection to the old one. The node pings the
// older connection on that very connection: silence (a QUIC connection to a crashed
// process) closes it; a live connection stays, also when the peer does not speak the ping
// protocol.
func TestStaleConnClosed(t *testing.T) {
	for _, c := range []struct {
		name      string
		handler   func(h host.Host)
		wantClose bool
	}{
		{"silent", func(h host.Host) {
			h.SetStreamHandler(ping.ID, func(s network.Stream) { _, _ = io.Copy(io.Discard, s) })
		}, true},
		{"alive", func(host.Host) {}, false},
		{"no ping protocol", func(h host.Host) { h.RemoveStreamHandler(ping.ID) }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ka, _, _ := crypto.GenerateEd25519Key(nil)
			kb, _, _ := crypto.GenerateEd25519Key(nil)
			a, old := staleHost(t, ka), staleHost(t, kb)
			c.handler(old)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			n := &Node{h: a, log: quiet}
			n.ctx, n.cancel = context.WithCancel(context.Background())
			defer func() { n.cancel(); n.wg.Wait() }()
			n.watchStaleConns()
			if err := a.Connect(ctx, peer.AddrInfo{ID: old.ID(), Addrs: old.Addrs()}); err != nil {
				t.Fatal(err)
			}
			oldConn := a.Network().ConnsToPeer(old.ID())[0]
			restarted := staleHost(t, kb)
			if err := restarted.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
				t.Fatal(err)
			}
			if got := len(a.Network().ConnsToPeer(old.ID())); got < 2 && !oldConn.IsClosed() {
				t.Fatalf("%d connections to the peer, want the old and the new one", got)
			}
			deadline := time.Now().Add(staleCheckTimeout + 3*time.Second)
			for !oldConn.IsClosed() && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if oldConn.IsClosed() != c.wantClose {
				t.Fatalf("older connection closed: %v, want %v", oldConn.IsClosed(), c.wantClose)
			}
		})
	}
}
