package domains

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestMDNSNotifeeRetries: mDNS reports a peer once; the notifee keeps
// dialling it with backoff until it is reachable.
func TestMDNSNotifeeRetries(t *testing.T) {
	// A peer ID and a free address, for a peer that is not up yet.
	probe := bsTestHost(t)
	addr := probe.Addrs()[0]
	id, key := probe.ID(), probe.Peerstore().PrivKey(probe.ID())
	_ = probe.Close()

	h := bsTestHost(t)
	var mu sync.Mutex
	failures, connected := 0, 0
	cfg := bsConfig(t)
	cfg.DialTimeout = time.Second
	cfg.OnEvent = func(ev BootstrapEvent) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Source != BootstrapSourceMDNS || ev.Peer != id {
			return
		}
		switch ev.Kind {
		case BootstrapFailed:
			failures++
		case BootstrapConnected:
			connected++
		}
	}
	b, err := NewBootstrapper(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := newMDNSDiscovery(ctx, b) // the service is never started: we play mDNS
	defer func() { _ = d.close() }()
	d.HandlePeerFound(peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{addr}})
	d.HandlePeerFound(peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{addr}}) // no second series

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("two failed dials", func() bool { mu.Lock(); defer mu.Unlock(); return failures >= 2 })
	peerHost, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrs(addr))
	if err != nil {
		t.Skipf("cannot re-listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = peerHost.Close() })
	waitFor("a connection", func() bool { mu.Lock(); defer mu.Unlock(); return connected == 1 })
	if b.Source() != BootstrapSourceMDNS {
		t.Errorf("Source() = %q", b.Source())
	}
	waitFor("the retry series to end", func() bool { d.mu.Lock(); defer d.mu.Unlock(); return len(d.pending) == 0 })
}
