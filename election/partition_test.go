package election

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
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
	cfg := Config{HelloInterval: 200 * time.Millisecond}
	var nodes []*testNode
	var logBuf lockedBuffer
	defer func() {
		if t.Failed() {
			t.Log(logBuf.String())
		}
	}()
	// mocknet can keep a stream alive that was opened while its connection
	// was being closed, so the partition is also applied inside gossipsub
	// with a switchable blacklist.
	var pss []*pubsub.PubSub
	var blocks []*switchList
	for _, h := range mn.Hosts() {
		bl := &switchList{blocked: map[peer.ID]bool{}}
		blocks = append(blocks, bl)
		ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithBlacklist(bl))
		pss = append(pss, ps)
		if err != nil {
			t.Fatal(err)
		}
		d := &fakeDuties{}
		r, err := NewRunner(h, ps, "mock", d, WithConfig(cfg), WithLogger(slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", len(nodes))))
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

	// Partition: even nodes | odd nodes. Unlink every cross pair first, then
	// close cross connections until none is left: a dial that was in flight
	// when its link went away may still complete once.
	side := func(i int) int { return i % 2 }
	type pair struct{ a, b *testNode }
	var cross []pair
	for i, a := range nodes {
		for j, b := range nodes[i+1:] {
			if side(i) != side(i+1+j) {
				cross = append(cross, pair{a, b})
				blocks[i].set(b.h.ID(), true)
				blocks[i+1+j].set(a.h.ID(), true)
				if err := mn.UnlinkPeers(a.h.ID(), b.h.ID()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	quiet := 0
	waitFor(t, 5*time.Second, "no connection across the partition", func() bool {
		found := false
		for _, p := range cross {
			if len(p.a.h.Network().ConnsToPeer(p.b.h.ID())) > 0 || len(p.b.h.Network().ConnsToPeer(p.a.h.ID())) > 0 {
				found = true
				if err := mn.DisconnectPeers(p.a.h.ID(), p.b.h.ID()); err != nil {
					t.Fatal(err)
				}
			}
		}
		if found {
			quiet = 0
		} else {
			quiet++
		}
		return quiet >= 3
	})
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
	defer func() {
		if t.Failed() {
			for i, nd := range nodes {
				st := nd.r.State()
				t.Logf("node %d %s: %s epoch %d leader %s serving %v proxies %v candidates %v", i, st.Self, st.Role, st.Epoch, st.Leader, st.Serving, ids(st.Proxies), ids(st.Candidates))
			}
		}
	}()
	_, _ = logBuf.Write([]byte("=== PARTITIONED " + time.Now().Format("05.000") + "\n"))
	waitFor(t, 10*time.Second, "a proxy on each side", func() bool { return proxiesOn(0) == 1 && proxiesOn(1) == 1 })

	// Heal.
	for _, bl := range blocks {
		bl.clear()
	}
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
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// switchList is a pubsub.Blacklist that the test switches on and off.
type switchList struct {
	mu      sync.Mutex
	blocked map[peer.ID]bool
}

func (l *switchList) Add(peer.ID) bool { return false }

func (l *switchList) Contains(p peer.ID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.blocked[p]
}

func (l *switchList) set(p peer.ID, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.blocked[p] = on
}

func (l *switchList) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.blocked)
}
