package election

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

type fakeDuties struct {
	mu       sync.Mutex
	promoted []uint64
	demoted  int
	serving  bool
}

func (d *fakeDuties) Promote(_ context.Context, p Promotion) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.promoted = append(d.promoted, p.Epoch)
	d.serving = true
	return nil
}

func (d *fakeDuties) Demote(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.demoted++
	d.serving = false
	return nil
}

func (d *fakeDuties) isServing() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.serving
}

type testNode struct {
	h      host.Host
	r      *Runner
	duties *fakeDuties
	cancel context.CancelFunc
	down   bool
}

func startNodes(t *testing.T, n int) []*testNode {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	var nodes []*testNode
	for i := 0; i < n; i++ {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ps, err := pubsub.NewGossipSub(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		d := &fakeDuties{}
		r, err := NewRunner(h, ps, "example.org", d, WithLogger(logger.With("node", i)))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &testNode{h: h, r: r, duties: d, cancel: cancel})
	}
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			if err := a.h.Connect(context.Background(), peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, nd := range nodes {
		if err := nd.r.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			_ = nd.r.Close()
			nd.cancel()
			_ = nd.h.Close()
		}
	})
	return nodes
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a settle delay
	}
	return time.Since(start)
}

// agreed reports whether all live nodes agree on one serving proxy and two
// candidates; it returns the proxy.
func agreed(nodes []*testNode) (peer.ID, bool) {
	var ref State
	first := true
	for _, nd := range nodes {
		if nd.down {
			continue
		}
		s := nd.r.State()
		if first {
			ref, first = s, false
		}
		if s.Leader == "" || s.Epoch != ref.Epoch || s.Leader != ref.Leader ||
			len(s.Proxies) != 1 || len(s.Candidates) != 2 ||
			!slices.Equal(ids(s.Candidates), ids(ref.Candidates)) {
			return "", false
		}
	}
	if first {
		return "", false
	}
	proxies, cands := 0, 0
	for _, nd := range nodes {
		if nd.down {
			continue
		}
		switch s := nd.r.State(); s.Role {
		case RoleProxy:
			proxies++
			if !s.Serving || !nd.duties.isServing() {
				return "", false
			}
		case RoleCandidate:
			cands++
		}
	}
	return ref.Leader, proxies == 1 && cands == 2
}

func nodeOf(nodes []*testNode, id peer.ID) *testNode {
	for _, nd := range nodes {
		if nd.h.ID() == id {
			return nd
		}
	}
	return nil
}

func TestRunnerElectAndFailover(t *testing.T) {
	nodes := startNodes(t, 5)
	var proxy peer.ID
	d := waitFor(t, 15*time.Second, "first election", func() bool {
		var ok bool
		proxy, ok = agreed(nodes)
		return ok
	})
	t.Logf("elected %s in %v", proxy, d)
	old := nodeOf(nodes, proxy)
	epoch := old.r.State().Epoch
	succ := old.r.State().Candidates[0].ID

	// Crash the proxy: close its host without a handoff.
	crashed := time.Now()
	old.down = true
	if err := old.h.Close(); err != nil {
		t.Fatal(err)
	}
	var newProxy peer.ID
	waitFor(t, 5*time.Second, "a new serving proxy", func() bool {
		for _, nd := range nodes {
			if s := nd.r.State(); !nd.down && s.Role == RoleProxy && s.Serving && s.Epoch > epoch {
				newProxy = nd.h.ID()
				return true
			}
		}
		return false
	})
	failover := time.Since(crashed)
	t.Logf("failover to %s in %v", newProxy, failover)
	if failover >= 2*time.Second {
		t.Errorf("failover took %v, want < 2s", failover)
	}
	if newProxy != succ {
		t.Errorf("new proxy %s, want the best candidate %s", newProxy, succ)
	}
	// The four survivors settle on one proxy; there are only 3 other
	// nodes, so the candidate list refills to 2.
	waitFor(t, 5*time.Second, "agreement after failover", func() bool {
		p, ok := agreed(nodes)
		return ok && p == newProxy
	})
	// Closing the crashed node's runner is bounded even though its host is gone.
	start := time.Now()
	if err := old.r.Close(); err != nil {
		t.Logf("close of crashed runner: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := old.r.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}
}

func TestRunnerGracefulLeave(t *testing.T) {
	nodes := startNodes(t, 5)
	var proxy peer.ID
	waitFor(t, 15*time.Second, "first election", func() bool {
		var ok bool
		proxy, ok = agreed(nodes)
		return ok
	})
	old := nodeOf(nodes, proxy)
	epoch := old.r.State().Epoch
	succ := old.r.State().Candidates[0].ID
	ch, cancel := nodeOf(nodes, succ).r.Subscribe()
	defer cancel()

	start := time.Now()
	if err := old.r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	old.down = true
	if old.duties.isServing() || old.duties.demoted == 0 {
		t.Fatal("leaving proxy was not demoted")
	}
	// The successor learns of its new role from the handoff, without waiting
	// for missed Hellos.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case s := <-ch:
			if s.Role == RoleProxy && s.Serving && s.Epoch == epoch+1 {
				t.Logf("handoff to %s serving after %v", succ, time.Since(start))
				if d := time.Since(start); d > time.Second {
					t.Errorf("handoff took %v", d)
				}
				waitFor(t, 5*time.Second, "agreement after handoff", func() bool {
					p, ok := agreed(nodes)
					return ok && p == succ
				})
				return
			}
		case <-deadline:
			t.Fatalf("successor state %+v", nodeOf(nodes, succ).r.State())
		}
	}
}

func TestRunnerLifecycle(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewRunner(h, ps, "Bad Domain", nil); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("bad domain: %v", err)
	}
	r, err := NewRunner(h, ps, "lifecycle", nil, WithReachability(ReachabilityPublic), WithOptOut())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	if s := r.State(); s.Role != RolePeer || s.Utility != NotEligible {
		t.Fatalf("state %+v", s)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if err := r.Start(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	// The topic can be joined again after Close.
	r2, err := NewRunner(h, ps, "lifecycle", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Start(); err != nil {
		t.Fatal(err)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
}

type flakyDuties struct {
	fakeDuties
	mu       sync.Mutex
	failures int
}

func (d *flakyDuties) Promote(ctx context.Context, p Promotion) error {
	d.mu.Lock()
	if d.failures > 0 {
		d.failures--
		d.mu.Unlock()
		return errors.New("global overlay unreachable")
	}
	d.mu.Unlock()
	return d.fakeDuties.Promote(ctx, p)
}

func TestRunnerRetriesDutiesAndDemotesOnClose(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	d := &flakyDuties{failures: 2}
	r, err := NewRunner(h, ps, "alone", d, WithConfig(Config{HelloInterval: 100 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a lone node serving after failed promotions", func() bool {
		s := r.State()
		return s.Role == RoleProxy && s.Serving && d.isServing()
	})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if d.isServing() || d.demoted != 1 {
		t.Fatalf("serving %v after Close, %d demotions", d.isServing(), d.demoted)
	}
}
