package bootstrap

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
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
	cfg = append(cfg, WithDialTimeout(time.Second))
	cfg = append(cfg, WithEventHook(func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Source != SourceMDNS || ev.Peer != id {
			return
		}
		switch ev.Kind {
		case EventFailed:
			failures++
		case EventConnected:
			connected++
		}
	}))
	b, err := New(h, "pastry", cfg...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := newMDNSDiscovery(ctx, b) // the service is never started: we play mDNS
	defer func() { _ = d.close() }()
	d.HandlePeerFound(peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{addr}})
	d.HandlePeerFound(peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{addr}}) // no second series

	waitFor(t, 10*time.Second, "two failed dials", func() bool { mu.Lock(); defer mu.Unlock(); return failures >= 2 })
	peerHost, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrs(addr))
	if err != nil {
		t.Skipf("cannot re-listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = peerHost.Close() })
	waitFor(t, 10*time.Second, "a connection", func() bool { mu.Lock(); defer mu.Unlock(); return connected == 1 })
	if b.Source() != SourceMDNS {
		t.Errorf("Source() = %q", b.Source())
	}
	waitFor(t, 10*time.Second, "the retry series to end", func() bool { d.mu.Lock(); defer d.mu.Unlock(); return len(d.pending) == 0 })
}

// TestMDNSMutualDiscovery: two nodes find each other by mDNS at the same
// moment. Only the node with the smaller peer ID dials (both dialling at
// once makes a TCP simultaneous open that fails the security handshake), and
// both report the peer found by mDNS as connected.
func TestMDNSMutualDiscovery(t *testing.T) {
	for round := range 5 {
		hosts := [2]host.Host{bsTestHost(t), bsTestHost(t)}
		var (
			mu        sync.Mutex
			connected [2]int
			failed    [2]int
		)
		ctx, cancel := context.WithCancel(context.Background())
		var ds [2]*mdnsDiscovery
		for i, h := range hosts {
			other := hosts[1-i].ID()
			cfg := bsConfig(t)
			cfg = append(cfg, WithEventHook(func(ev Event) {
				if ev.Source != SourceMDNS || ev.Peer != other {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				switch ev.Kind {
				case EventConnected:
					connected[i]++
				case EventFailed:
					failed[i]++
				}
			}))
			b, err := New(h, "pastry", cfg...)
			if err != nil {
				t.Fatal(err)
			}
			ds[i] = newMDNSDiscovery(ctx, b) // never started: the test plays mDNS
		}
		var wg sync.WaitGroup
		for i := range hosts {
			wg.Go(func() {
				o := hosts[1-i]
				ds[i].HandlePeerFound(peer.AddrInfo{ID: o.ID(), Addrs: o.Addrs()})
			})
		}
		wg.Wait()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			done := connected[0] > 0 && connected[1] > 0
			mu.Unlock()
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: connected events %v, failed dials %v", round, connected, failed)
			}
			time.Sleep(10 * time.Millisecond)
		}
		for i := range ds {
			for {
				ds[i].mu.Lock()
				n := len(ds[i].pending)
				ds[i].mu.Unlock()
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: node %d still has %d mDNS retry series", round, i, n)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		cancel()
		for _, d := range ds {
			_ = d.close()
		}
		mu.Lock()
		if failed != [2]int{} || connected != [2]int{1, 1} {
			t.Errorf("round %d: connected events %v, failed dials %v; want one connected event each and no failure", round, connected, failed)
		}
		mu.Unlock()
		if n := len(hosts[0].Network().ConnsToPeer(hosts[1].ID())); n != 1 {
			t.Errorf("round %d: %d connections between the nodes, want 1", round, n)
		}
	}
}
