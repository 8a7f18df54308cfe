package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hiersip/hiersip/domains"
)

// TestChurn runs a 30-node domain in which a third of the nodes are killed and restarted
// (same identity, from their data directory) at random times over a minute. Each node
// registers one AOR and re-stores it when it comes back; meanwhile lookups of the AORs of
// nodes that have re-stored go on from random live nodes: at least 99 % must succeed. After
// Close, the goroutines return to the baseline.
func TestChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	const nodes, killed = 30, 10
	churnFor := 60 * time.Second
	if v, err := strconv.Atoi(os.Getenv("CHURN_SECONDS")); err == nil && v > 0 {
		churnFor = time.Duration(v) * time.Second
	}
	baseline := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), churnFor+3*time.Minute)
	defer cancel()

	dirs := make([]string, nodes)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	cfgFor := func(i int, seeds []string) Config {
		return Config{Domain: "churn", DataDir: dirs[i], ListenAddrs: loopback, Logger: quiet,
			Election:  ElectionConfig{Disable: true},
			Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: seeds}}
	}
	aorOf := func(i int) domains.AOR { return mustAOR(t, fmt.Sprintf("sip:user%d@bupt.churn", i)) }
	register := func(n *Node, i int) error {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return n.Register(rctx, aorOf(i), contact(fmt.Sprintf("sip:user%d@127.0.0.1:%d", i, 7000+i), time.Hour))
	}

	// Nodes 0 and 1 are the seeds and are never killed.
	var mu sync.Mutex
	live := make([]*Node, nodes)
	ready := make([]bool, nodes) // registered (again) since the last start
	start := func(i int, seeds []string) *Node {
		n, err := New(ctx, cfgFor(i, seeds))
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		return n
	}
	live[0] = start(0, nil)
	seeds := []string{p2pAddr(t, live[0].Host())}
	live[1] = start(1, seeds)
	seeds = append(seeds, p2pAddr(t, live[1].Host()))
	for i := 2; i < nodes; i++ {
		live[i] = start(i, seeds)
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range live {
			if n != nil {
				_ = n.Close()
			}
		}
	}()
	for i, n := range live {
		waitJoined(t, n)
		if err := register(n, i); err != nil {
			t.Fatalf("node %d register: %v", i, err)
		}
		ready[i] = true
	}
	t.Logf("%d nodes up and registered", nodes)

	// Lookups from random live nodes of random ready AORs, until the churn ends.
	var lookups, failures atomic.Int64
	stopLookups := make(chan struct{})
	var lw sync.WaitGroup
	for w := 0; w < 2; w++ {
		lw.Add(1)
		go func() {
			defer lw.Done()
			pace := time.NewTicker(25 * time.Millisecond) // a lookup rate, not a wait for a condition
			defer pace.Stop()
			for {
				select {
				case <-stopLookups:
					return
				case <-pace.C:
				}
				mu.Lock()
				from, target := rand.IntN(nodes), rand.IntN(nodes)
				n, ok := live[from], live[from] != nil && ready[from] && ready[target]
				mu.Unlock()
				if !ok {
					continue
				}
				lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				b, err := n.Lookup(lctx, aorOf(target))
				cancel()
				mu.Lock()
				stillLive := live[from] == n
				mu.Unlock()
				if !stillLive {
					continue // killed while looking up: not a failure of the overlay
				}
				lookups.Add(1)
				if err != nil || b == nil || b.AOR != aorOf(target).String() {
					failures.Add(1)
					t.Logf("lookup of user%d from node %d failed: %v", target, from, err)
				}
			}
		}()
	}

	// The churn: 10 distinct nodes (never the seeds), each killed at a random time in the
	// window and restarted a random 1–5 s later.
	victims := rand.Perm(nodes - 2)[:killed]
	var cw sync.WaitGroup
	began := time.Now()
	for _, v := range victims {
		i := v + 2
		killAt := time.Duration(rand.Int64N(int64(churnFor - 5*time.Second)))
		down := time.Second + time.Duration(rand.Int64N(int64(4*time.Second)))
		cw.Add(1)
		go func() {
			defer cw.Done()
			select {
			case <-time.After(time.Until(began.Add(killAt))):
			case <-ctx.Done():
				return
			}
			mu.Lock()
			n := live[i]
			live[i], ready[i] = nil, false
			mu.Unlock()
			if err := n.Close(); err != nil {
				t.Errorf("closing node %d: %v", i, err)
			}
			select {
			case <-time.After(down):
			case <-ctx.Done():
				return
			}
			nn, err := New(ctx, cfgFor(i, seeds))
			if err != nil {
				t.Errorf("restarting node %d: %v", i, err)
				return
			}
			if nn.ID() != n.ID() {
				t.Errorf("node %d came back as %s, was %s", i, nn.ID(), n.ID())
			}
			select {
			case <-nn.Joined():
			case <-ctx.Done():
			}
			// A restarted node re-stores its binding (a new sequence number).
			var rerr error
			for attempt := 0; attempt < 5; attempt++ {
				if rerr = register(nn, i); rerr == nil {
					break
				}
			}
			if rerr != nil {
				t.Errorf("node %d re-store: %v", i, rerr)
			}
			mu.Lock()
			live[i], ready[i] = nn, rerr == nil
			mu.Unlock()
		}()
	}
	cw.Wait()
	close(stopLookups)
	lw.Wait()
	total, failed := lookups.Load(), failures.Load()
	rate := 100 * float64(total-failed) / float64(max(total, 1))
	t.Logf("churn: %d of %d nodes killed and restarted over %v; lookups %d, failed %d (%.2f %% succeeded)",
		killed, nodes, time.Since(began).Round(time.Second), total, failed, rate)
	if total == 0 || rate < 99 {
		t.Fatalf("%.2f %% of %d lookups succeeded, want ≥ 99 %%", rate, total)
	}

	mu.Lock()
	for i, n := range live {
		if n != nil {
			if err := n.Close(); err != nil {
				t.Errorf("closing node %d: %v", i, err)
			}
			live[i] = nil
		}
	}
	mu.Unlock()
	const slack = 20
	deadline := time.Now().Add(30 * time.Second)
	for runtime.NumGoroutine() > baseline+slack {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d after Close, baseline %d\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("goroutines: baseline %d, %d after closing all nodes", baseline, runtime.NumGoroutine())
}
