package election

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func mustSettle(t *testing.T, s *sim, g, proxies, candidates int, max time.Duration) time.Duration {
	t.Helper()
	d, ok := s.until(max, func() bool { return s.settled(g, proxies, candidates) })
	if !ok {
		for _, nd := range s.up() {
			t.Logf("%s group %d role %s epoch %d leader %s roster %v", nd.id, nd.group, nd.e.Role(), nd.e.Epoch(), nd.e.Leader(), ids(nd.e.roster))
		}
		t.Fatalf("group %d did not settle with %d proxies and %d candidates within %v", g, proxies, candidates, max)
	}
	return d
}

func TestElectionFromScratch(t *testing.T) {
	s := newSim(t, 10, Config{}, distinctMetrics(10))
	d := mustSettle(t, s, -1, 1, 2, 10*time.Second)
	t.Logf("settled after %v", d)
	if got, want := s.withRole(-1, RoleProxy), []peer.ID{s.nodes[0].id}; !slices.Equal(got, want) {
		t.Fatalf("proxies %v, want the best node %v", got, want)
	}
	cands := s.nodes[0].e.Candidates()
	if len(cands) != 2 || cands[0].ID != s.nodes[1].id || cands[1].ID != s.nodes[2].id {
		t.Fatalf("candidates %v, want nodes 1 and 2", cands)
	}
	if e := s.nodes[5].e.Epoch(); e != 1 {
		t.Fatalf("epoch %d, want 1", e)
	}
	// Stable afterwards: nothing changes over a minute.
	s.advance(time.Minute)
	if !s.settled(-1, 1, 2) || s.nodes[3].e.Epoch() != 1 || s.nodes[3].e.Leader() != s.nodes[0].id {
		t.Fatalf("election not stable")
	}
}

func TestElectionEqualMetricsTieBreakByPeerID(t *testing.T) {
	s := newSim(t, 8, Config{}, nil)
	mustSettle(t, s, -1, 1, 2, 10*time.Second)
	lowest := slices.Min(ids(membersOf(s)))
	if got := s.withRole(-1, RoleProxy); len(got) != 1 || got[0] != lowest {
		t.Fatalf("proxy %v, want lowest peer ID %v", got, lowest)
	}
}

func membersOf(s *sim) []Member {
	var out []Member
	for _, nd := range s.nodes {
		out = append(out, Member{ID: nd.id})
	}
	return out
}

func TestFailoverAfterProxyCrash(t *testing.T) {
	t.Run("silent", func(t *testing.T) { testFailover(t, false, 2*time.Second) })
	// A crashed host refuses dials: each Hello fails at once.
	t.Run("refused", func(t *testing.T) { testFailover(t, true, 1550*time.Millisecond) })
}

func testFailover(t *testing.T, unreachable bool, limit time.Duration) {
	s := newSim(t, 10, Config{}, distinctMetrics(10))
	s.unreachable = unreachable
	mustSettle(t, s, -1, 1, 2, 10*time.Second)
	// Crash the proxy at several phases of the Hello cycle; worst case counts.
	var worst time.Duration
	for phase := 0; phase < 10; phase++ {
		s.advance(time.Duration(phase) * s.tick)
		old := s.withRole(-1, RoleProxy)[0]
		best := s.node(old).e.Candidates()[0].ID
		epoch := s.node(old).e.Epoch()
		s.node(old).up = false
		d, ok := s.until(5*time.Second, func() bool {
			p := s.withRole(-1, RoleProxy)
			return len(p) == 1 && p[0] != old
		})
		if !ok {
			t.Fatalf("phase %d: no new proxy", phase)
		}
		worst = max(worst, d)
		if got := s.withRole(-1, RoleProxy)[0]; got != best {
			t.Fatalf("new proxy %v, want the best candidate %v", got, best)
		}
		if e := s.node(best).e.Epoch(); e != epoch+1 {
			t.Fatalf("epoch %d, want %d", e, epoch+1)
		}
		mustSettle(t, s, -1, 1, 2, 5*time.Second)
		if len(s.up()) < 5 {
			break
		}
	}
	t.Logf("worst failover %v", worst)
	if worst >= limit {
		t.Fatalf("failover took %v, want < %v", worst, limit)
	}
}

func TestGracefulHandoff(t *testing.T) {
	s := newSim(t, 10, Config{}, distinctMetrics(10))
	mustSettle(t, s, -1, 1, 2, 10*time.Second)
	old := s.nodes[0]
	succ := old.e.Candidates()[0].ID
	old.e.Leave()
	if old.e.Role() != RolePeer {
		t.Fatalf("leaver role %v", old.e.Role())
	}
	s.deliver() // the handoff travels before the node goes
	old.up = false
	if got := s.withRole(-1, RoleProxy); len(got) != 1 || got[0] != succ {
		t.Fatalf("proxy right after handoff %v, want %v", got, succ)
	}
	if e := s.node(succ).e.Epoch(); e != 2 {
		t.Fatalf("epoch %d, want 2", e)
	}
	mustSettle(t, s, -1, 1, 2, 3*time.Second)
}

func TestCandidateLeaveIsReplaced(t *testing.T) {
	s := newSim(t, 10, Config{}, distinctMetrics(10))
	mustSettle(t, s, -1, 1, 2, 10*time.Second)
	c := s.node(s.nodes[0].e.Candidates()[0].ID)
	c.e.Leave()
	s.deliver()
	c.up = false
	mustSettle(t, s, -1, 1, 2, time.Second)
	if s.nodes[0].e.Epoch() != 1 {
		t.Fatal("epoch changed on candidate leave")
	}
}

func TestPartitionHealLeavesOneProxy(t *testing.T) {
	for _, proxies := range []int{1, 2} {
		s := newSim(t, 12, Config{Proxies: proxies}, distinctMetrics(12))
		mustSettle(t, s, -1, proxies, 2, 10*time.Second)
		// Split: odd nodes (among them the first candidate) on one side,
		// even nodes (the leader) on the other.
		for i, nd := range s.nodes {
			nd.group = i % 2
		}
		mustSettle(t, s, 0, proxies, 2, 15*time.Second)
		mustSettle(t, s, 1, proxies, 2, 15*time.Second)
		if s.nodes[0].e.Leader() == s.nodes[1].e.Leader() {
			t.Fatal("partition did not split the election")
		}
		s.advance(10 * time.Second)
		for _, nd := range s.nodes {
			nd.group = 0
		}
		mustSettle(t, s, -1, proxies, 2, 5*time.Second)
		for i := 0; i < 200; i++ {
			s.advance(s.tick)
			if p := s.withRole(-1, RoleProxy); len(p) != proxies {
				t.Fatalf("%d proxies after heal, want %d", len(p), proxies)
			}
		}
		if !s.settled(-1, proxies, 2) {
			t.Fatal("not stable after heal")
		}
		t.Logf("proxies=%d: after heal leader %v epoch %d", proxies, s.nodes[0].e.Leader(), s.nodes[0].e.Epoch())
	}
}

func TestFlappingHelloLossNoFailover(t *testing.T) {
	s := newSim(t, 6, Config{}, distinctMetrics(6))
	mustSettle(t, s, -1, 1, 2, 10*time.Second)
	leader := s.nodes[0].id
	epoch := s.nodes[0].e.Epoch()
	cand := s.nodes[0].e.Candidates()[0].ID
	// Lose everything between the leader and a candidate in two of every
	// three Hello intervals: two consecutive Hellos missed, then one answered.
	start := s.now
	s.drop = func(from, to peer.ID, m Message) bool {
		if !(from == leader && to == cand || from == cand && to == leader) {
			return false
		}
		k := int(s.now.Sub(start) / s.nodes[0].e.Config().HelloInterval)
		return k%3 != 2
	}
	maxMissed := 0
	for i := 0; i < 600; i++ { // 30 s
		s.advance(s.tick)
		maxMissed = max(maxMissed, s.node(cand).e.missed)
	}
	if maxMissed != s.nodes[0].e.Config().MissedHellos-1 {
		t.Fatalf("max missed Hellos %d, want the threshold minus one", maxMissed)
	}
	if got := s.withRole(-1, RoleProxy); len(got) != 1 || got[0] != leader {
		t.Fatalf("proxies %v, want %v", got, leader)
	}
	if e := s.node(cand).e.Epoch(); e != epoch || s.node(cand).e.Role() != RoleCandidate {
		t.Fatalf("candidate epoch %d role %v", e, s.node(cand).e.Role())
	}
	if s.node(cand).e.missed >= s.node(cand).e.Config().MissedHellos {
		t.Fatal("missed count reached threshold")
	}
}

func TestOptOutNeverProxy(t *testing.T) {
	n := 6
	base := distinctMetrics(n)
	s := newSim(t, n, Config{}, func(i int) Metrics {
		m := base(i)
		m.OptOut = i < 2 // the two best nodes opt out
		return m
	})
	mustSettle(t, s, -1, 1, 2, 10*time.Second)
	check := func() {
		for _, nd := range s.nodes[:2] {
			if r := nd.e.Role(); r != RolePeer {
				t.Fatalf("opt-out node has role %v", r)
			}
			for _, o := range s.up() {
				if slices.Contains(ids(o.e.roster), nd.id) || slices.Contains(ids(o.e.spares), nd.id) {
					t.Fatalf("opt-out node listed by %v", o.id)
				}
			}
		}
	}
	check()
	if p := s.withRole(-1, RoleProxy); len(p) != 1 || p[0] != s.nodes[2].id {
		t.Fatalf("proxy %v, want best eligible node %v", p, s.nodes[2].id)
	}
	// Crash eligible nodes one by one; opt-outs never step in.
	for _, i := range []int{2, 3, 4} {
		s.nodes[i].up = false
		s.advance(10 * time.Second)
		check()
	}
	if p := s.withRole(-1, RoleProxy); len(p) != 1 || p[0] != s.nodes[5].id {
		t.Fatalf("proxy %v, want last eligible node", p)
	}
	// The last eligible node goes: no proxy at all.
	s.nodes[5].up = false
	s.advance(10 * time.Second)
	check()
	if p := s.withRole(-1, RoleProxy); len(p) != 0 {
		t.Fatalf("proxy %v among opt-outs", p)
	}
}

func TestOptOutWhileProxyHandsOver(t *testing.T) {
	s := newSim(t, 6, Config{}, distinctMetrics(6))
	mustSettle(t, s, -1, 1, 2, 10*time.Second)
	m := distinctMetrics(6)(0)
	m.OptOut = true
	s.nodes[0].e.SetMetrics(m)
	s.deliver()
	if p := s.withRole(-1, RoleProxy); len(p) != 1 || p[0] != s.nodes[1].id {
		t.Fatalf("proxy %v after opt-out, want %v", p, s.nodes[1].id)
	}
	s.advance(20 * time.Second)
	if r := s.nodes[0].e.Role(); r != RolePeer {
		t.Fatalf("opt-out node role %v", r)
	}
}

func TestNATedLosesToPublic(t *testing.T) {
	s := newSim(t, 6, Config{}, func(i int) Metrics {
		if i == 0 { // a strong node behind NAT with a big operator weight
			return Metrics{Online: 100 * time.Hour, Bandwidth: 1e9, CPU: 64, Reachability: ReachabilityPrivate, Weight: 100}
		}
		if i == 5 { // a weak public node
			return Metrics{Online: time.Second, Bandwidth: 1e5, CPU: 0.5, Reachability: ReachabilityPublic}
		}
		return Metrics{Online: time.Hour, Bandwidth: 1e7, CPU: 2, Reachability: ReachabilityPrivate}
	})
	mustSettle(t, s, -1, 1, 2, 10*time.Second)
	if p := s.withRole(-1, RoleProxy); len(p) != 1 || p[0] != s.nodes[5].id {
		t.Fatalf("proxy %v, want the public node %v", p, s.nodes[5].id)
	}
}

func TestMultipleProxiesFailover(t *testing.T) {
	s := newSim(t, 10, Config{Proxies: 3, Candidates: 2}, distinctMetrics(10))
	mustSettle(t, s, -1, 3, 2, 10*time.Second)
	for i := 0; i < 3; i++ { // crash a proxy: leader first, then others
		p := s.withRole(-1, RoleProxy)
		s.node(p[0]).up = false
		mustSettle(t, s, -1, 3, 2, 5*time.Second)
	}
}

func TestLateJoinerLearnsProxy(t *testing.T) {
	s := newSim(t, 6, Config{}, distinctMetrics(6))
	s.nodes[5].up = false
	mustSettle(t, s, -1, 1, 2, 10*time.Second)
	s.nodes[5].up = true
	s.nodes[5].e.Tick(s.now)
	d := mustSettle(t, s, -1, 1, 2, 2*time.Second)
	if d > time.Second || s.nodes[5].e.Leader() != s.nodes[0].id {
		t.Fatalf("late joiner learned leader %v after %v", s.nodes[5].e.Leader(), d)
	}
}

func TestBetterPeerBecomesCandidate(t *testing.T) {
	s := newSim(t, 8, Config{}, func(i int) Metrics {
		return Metrics{Online: time.Duration(8-i) * time.Minute, CPU: 1}
	})
	mustSettle(t, s, -1, 1, 2, 10*time.Second)
	// Node 7, the worst, gets a lot better: it should displace a candidate.
	s.nodes[7].e.SetMetrics(Metrics{Online: time.Hour, CPU: 64, Bandwidth: 1e9})
	_, ok := s.until(10*time.Second, func() bool {
		c := s.nodes[0].e.Candidates()
		return len(c) == 2 && c[0].ID == s.nodes[7].id
	})
	if !ok {
		t.Fatalf("candidates %v", s.nodes[0].e.Candidates())
	}
	if p := s.withRole(-1, RoleProxy); len(p) != 1 || p[0] != s.nodes[0].id {
		t.Fatal("serving proxy was preempted")
	}
}

func TestConfigValidation(t *testing.T) {
	id := testIDs(t, 1, 2)[0]
	for _, c := range []Config{
		{Proxies: -1},
		{HelloInterval: time.Second, HelloTimeout: 2 * time.Second},
		{Candidates: 60, Spares: 10},
	} {
		if _, err := New(id, c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
	if _, err := New("", Config{}); err == nil {
		t.Error("New with empty ID succeeded")
	}
}

func TestSplitFromStartHealKeepsBetterLeader(t *testing.T) {
	s := newSim(t, 10, Config{}, distinctMetrics(10))
	// Node 0 is clearly better (by more than Margin): online for hours, the
	// others for minutes. Leaders within Margin of each other would settle
	// by epoch, then peer ID.
	s.nodes[0].e.SetMetrics(Metrics{Online: 10 * time.Hour, Bandwidth: 10e6, CPU: 2})
	for i, nd := range s.nodes {
		nd.group = i % 2 // node 0 (the best) in group 0, node 1 in group 1
	}
	mustSettle(t, s, 0, 1, 2, 10*time.Second)
	mustSettle(t, s, 1, 1, 2, 10*time.Second)
	if s.nodes[0].e.Epoch() != 1 || s.nodes[1].e.Epoch() != 1 {
		t.Fatalf("epochs %d and %d, want 1 and 1", s.nodes[0].e.Epoch(), s.nodes[1].e.Epoch())
	}
	for _, nd := range s.nodes {
		nd.group = 0
	}
	// From the first delivery on there is never more than one leader that
	// anyone follows, and it settles on the clearly better one.
	mustSettle(t, s, -1, 1, 2, 5*time.Second)
	if p := s.withRole(-1, RoleProxy); len(p) != 1 || p[0] != s.nodes[0].id {
		t.Fatalf("proxy after heal %v, want %v", p, s.nodes[0].id)
	}
	for i := 0; i < 200; i++ {
		s.advance(s.tick)
		if p := s.withRole(-1, RoleProxy); len(p) != 1 {
			t.Fatalf("%d proxies after heal", len(p))
		}
	}
}

// TestTrafficBoundedThroughFailover checks that a failover in a large
// domain causes no burst of O(N) messages at any node: spares refill the
// candidate list and the bid floor keeps other peers quiet.
func TestTrafficBoundedThroughFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("large simulation")
	}
	const n = 300
	s := newSim(t, n, Config{}, distinctMetrics(n))
	s.wire = false
	mustSettle(t, s, -1, 1, 2, 15*time.Second)
	s.advance(5 * time.Second)
	interval := s.nodes[0].e.Config().HelloInterval
	worst := 0
	measure := func(d time.Duration) {
		for end := s.now.Add(d); s.now.Before(end); {
			clear(s.received)
			s.advance(interval)
			for _, c := range s.received {
				worst = max(worst, c)
			}
		}
	}
	s.nodes[0].up = false // the leader crashes
	measure(5 * time.Second)
	c := s.node(s.withRole(-1, RoleCandidate)[0])
	c.up = false // then a candidate
	measure(5 * time.Second)
	s.withRole(-1, RoleProxy)
	lead := s.node(s.withRole(-1, RoleProxy)[0])
	lead.e.Leave() // then the new leader leaves gracefully
	s.deliver()
	lead.up = false
	measure(5 * time.Second)
	if !s.settled(-1, 1, 2) {
		t.Fatal("not settled")
	}
	t.Logf("N=%d: at most %d messages at one node in one interval through failovers", n, worst)
	if worst > 10 {
		t.Fatalf("burst of %d messages at one node in one interval", worst)
	}
}
