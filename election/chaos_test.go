package election

import (
	"math/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestChaosConverges drives the in-memory network through random message
// loss, partitions, crashes, restarts and leaves, then repairs it and
// checks that the domain settles on exactly one roster.
func TestChaosConverges(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 5
	}
	for seed := int64(1); seed <= int64(seeds); seed++ {
		rng := rand.New(rand.NewSource(seed))
		n := 4 + rng.Intn(9)
		proxies := 1 + rng.Intn(2)
		s := newSim(t, n, Config{Proxies: proxies}, distinctMetrics(n))
		s.wire = false
		loss := rng.Float64() * 0.5
		s.drop = func(from, to peer.ID, m Message) bool { return rng.Float64() < loss }
		maxLatency := time.Duration(rng.Intn(400)) * time.Millisecond
		s.latency = func() time.Duration { return time.Duration(rng.Int63n(int64(maxLatency) + 1)) }
		for step := 0; step < 40; step++ {
			switch rng.Intn(6) {
			case 0: // partition
				for _, nd := range s.nodes {
					nd.group = rng.Intn(3)
				}
			case 1: // heal
				for _, nd := range s.nodes {
					nd.group = 0
				}
			case 2: // crash or restart one node
				nd := s.nodes[rng.Intn(n)]
				if nd.up {
					nd.up = false
				} else {
					e, _ := New(nd.id, Config{Proxies: proxies})
					e.SetMetrics(Metrics{Online: time.Minute})
					nd.e, nd.up = e, true
					e.Tick(s.now)
				}
			case 3: // graceful leave and restart
				nd := s.nodes[rng.Intn(n)]
				if nd.up {
					nd.e.Leave()
					s.deliver()
					e, _ := New(nd.id, Config{Proxies: proxies})
					e.SetMetrics(Metrics{Online: time.Second})
					nd.e = e
					e.Tick(s.now)
				}
			case 4: // change loss rate
				loss = rng.Float64() * 0.6
			}
			s.advance(time.Duration(rng.Intn(4000)) * time.Millisecond)
		}
		// Repair: everyone up, one group, no loss, a little latency.
		s.drop = nil
		s.latency = func() time.Duration { return time.Duration(rng.Intn(60)) * time.Millisecond }
		for _, nd := range s.nodes {
			nd.group = 0
			if !nd.up {
				e, _ := New(nd.id, Config{Proxies: proxies})
				nd.e, nd.up = e, true
				e.Tick(s.now)
			}
		}
		want := min(2, n-proxies)
		if _, ok := s.until(20*time.Second, func() bool { return s.settled(-1, proxies, want) }); !ok {
			for _, nd := range s.up() {
				t.Logf("%s role %s epoch %d leader %s roster %v", nd.id, nd.e.Role(), nd.e.Epoch(), nd.e.Leader(), ids(nd.e.roster))
			}
			t.Fatalf("seed %d (n=%d proxies=%d): no convergence", seed, n, proxies)
		}
	}
}
