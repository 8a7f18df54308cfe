package election

import (
	"context"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// TestRunnerPartitionHeal runs six runners on a mocknet with gossipsub,
// partitions the network in two, lets each side elect, heals it, and checks
// that exactly one proxy remains.
func TestRunnerPartitionHeal(t *testing.T) {
	const n = 6
	mn, err := mocknet.FullMeshConnected(n)
	if err != nil {
		t.Fatal(err)
	}
	defer mn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := Config{HelloInterval: 100 * time.Millisecond}
	var nodes []*testNode
	for _, h := range mn.Hosts() {
		ps, err := pubsub.NewGossipSub(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		d := &fakeDuties{}
		r, err := NewRunner(h, ps, "mock", d, WithConfig(cfg))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &testNode{h: h, r: r, duties: d, cancel: func() {}})
	}
	for _, nd := range nodes {
		if err := nd.r.Start(); err != nil {
			t.Fatal(err)
		}
		defer nd.r.Close()
	}
	waitFor(t, 10*time.Second, "first election", func() bool { _, ok := agreed(nodes); return ok })

	// Partition: even nodes | odd nodes.
	side := func(i int) int { return i % 2 }
	for i, a := range nodes {
		for j, b := range nodes[i+1:] {
			if side(i) != side(i+1+j) {
				if err := mn.UnlinkPeers(a.h.ID(), b.h.ID()); err != nil {
					t.Fatal(err)
				}
				if err := mn.DisconnectPeers(a.h.ID(), b.h.ID()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	proxiesOn := func(s int) (count int) {
		for i, nd := range nodes {
			if side(i) == s || s < 0 {
				if st := nd.r.State(); st.Role == RoleProxy && st.Serving {
					count++
				}
			}
		}
		return count
	}
	waitFor(t, 10*time.Second, "a proxy on each side", func() bool { return proxiesOn(0) == 1 && proxiesOn(1) == 1 })

	// Heal.
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			if len(mn.LinksBetweenPeers(a.h.ID(), b.h.ID())) == 0 {
				if _, err := mn.LinkPeers(a.h.ID(), b.h.ID()); err != nil {
					t.Fatal(err)
				}
				if _, err := mn.ConnectPeers(a.h.ID(), b.h.ID()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	d := waitFor(t, 10*time.Second, "one proxy after heal", func() bool {
		_, ok := agreed(nodes)
		return ok && proxiesOn(-1) == 1
	})
	t.Logf("healed to one proxy in %v", d)
	// And it stays that way.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if c := proxiesOn(-1); c > 1 {
			t.Fatalf("%d proxies after heal", c)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
