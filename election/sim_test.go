package election

import (
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// sim is an in-memory network of election cores with a fake clock. Messages
// are delivered instantly (after an encode/decode round trip) within a
// partition group, unless drop says otherwise.
type sim struct {
	tb       testing.TB
	now      time.Time
	tick     time.Duration
	nodes    []*simNode
	byID     map[peer.ID]*simNode
	drop     func(from, to peer.ID, m Message) bool
	received map[peer.ID]int
	wire     bool
	// unreachable makes a unicast to a crashed node fail at once, as a
	// refused dial does, and reports it with Election.Unreachable.
	unreachable bool
	// latency, if set, delays each delivery by its result; messages are
	// then delivered on the first tick at or after their time.
	latency func() time.Duration
	pending []pendingMsg
}

type pendingMsg struct {
	at       time.Time
	from, to *simNode
	m        Message
}

type simNode struct {
	id    peer.ID
	e     *Election
	up    bool
	group int
}

var simEpoch = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func testIDs(tb testing.TB, n int, seed int64) []peer.ID {
	tb.Helper()
	r := rand.New(rand.NewSource(seed))
	out := make([]peer.ID, n)
	for i := range out {
		sk, _, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			tb.Fatal(err)
		}
		if out[i], err = peer.IDFromPrivateKey(sk); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// newSim makes n nodes; metrics(i) gives node i's metrics.
func newSim(tb testing.TB, n int, cfg Config, metrics func(i int) Metrics) *sim {
	tb.Helper()
	s := &sim{tb: tb, now: simEpoch, tick: 50 * time.Millisecond,
		byID: make(map[peer.ID]*simNode), received: make(map[peer.ID]int), wire: true}
	for i, id := range testIDs(tb, n, 1) {
		e, err := New(id, cfg)
		if err != nil {
			tb.Fatal(err)
		}
		if metrics != nil {
			e.SetMetrics(metrics(i))
		}
		nd := &simNode{id: id, e: e, up: true}
		s.nodes = append(s.nodes, nd)
		s.byID[id] = nd
	}
	return s
}

// distinctMetrics gives node i a longer online time the lower i is, so node
// 0 is the best.
func distinctMetrics(n int) func(int) Metrics {
	return func(i int) Metrics {
		return Metrics{Online: time.Duration(n-i) * time.Minute, Bandwidth: 10e6, CPU: 2}
	}
}

func (s *sim) reachable(a, b *simNode) bool {
	return a.up && b.up && a.group == b.group
}

// advance moves time forward by d, ticking every node each s.tick.
func (s *sim) advance(d time.Duration) {
	end := s.now.Add(d)
	for s.now.Before(end) {
		s.now = s.now.Add(s.tick)
		for _, nd := range s.nodes {
			if nd.up {
				nd.e.Tick(s.now)
			}
		}
		s.deliver()
		if s.latency != nil {
			due := s.pending
			s.pending = nil
			for _, p := range due {
				if p.at.After(s.now) {
					s.pending = append(s.pending, p)
					continue
				}
				s.receive(p.to, p.m)
			}
			s.deliver()
		}
	}
}

func (s *sim) deliver() {
	for round := 0; ; round++ {
		if round > 1000 {
			s.tb.Fatal("message storm: no quiescence")
		}
		any := false
		for _, from := range s.nodes {
			if !from.up {
				from.e.Ready() // a crashed node's queue is lost
				continue
			}
			for _, o := range from.e.Ready() {
				any = true
				m := o.Message
				if s.wire {
					b, err := Encode(m)
					if err != nil {
						s.tb.Fatalf("encode %+v: %v", m, err)
					}
					if m, err = Decode(b); err != nil {
						s.tb.Fatalf("decode: %v", err)
					}
				}
				if o.To != "" {
					if to, ok := s.byID[o.To]; ok {
						if s.unreachable && !to.up {
							from.e.Unreachable(o.To)
							continue
						}
						s.send(from, to, m)
					}
					continue
				}
				for _, to := range s.nodes {
					if to != from {
						s.send(from, to, m)
					}
				}
			}
		}
		if !any {
			return
		}
	}
}

func (s *sim) send(from, to *simNode, m Message) {
	if !s.reachable(from, to) || (s.drop != nil && s.drop(from.id, to.id, m)) {
		return
	}
	if s.latency != nil {
		if d := s.latency(); d > 0 {
			s.pending = append(s.pending, pendingMsg{at: s.now.Add(d), from: from, to: to, m: m})
			return
		}
	}
	s.receive(to, m)
}

func (s *sim) receive(to *simNode, m Message) {
	if !to.up {
		return
	}
	s.received[to.id]++
	// Every sim node is a direct neighbour of every other, and utilities
	// are what they claim: the runner would mark the leader observed.
	m.Observed = true
	if err := to.e.Step(m); err != nil {
		s.tb.Fatalf("step: %v", err)
	}
}

// until advances time until cond holds or max passes; it returns the time
// taken and whether cond held.
func (s *sim) until(max time.Duration, cond func() bool) (time.Duration, bool) {
	start := s.now
	for s.now.Sub(start) <= max {
		if cond() {
			return s.now.Sub(start), true
		}
		s.advance(s.tick)
	}
	return s.now.Sub(start), cond()
}

func (s *sim) up() []*simNode {
	var out []*simNode
	for _, nd := range s.nodes {
		if nd.up {
			out = append(out, nd)
		}
	}
	return out
}

// withRole returns the live nodes of group g (or all groups if g < 0) that
// hold role r.
func (s *sim) withRole(g int, r Role) []peer.ID {
	var out []peer.ID
	for _, nd := range s.up() {
		if (g < 0 || nd.group == g) && nd.e.Role() == r {
			out = append(out, nd.id)
		}
	}
	return out
}

// settled reports whether all live nodes of group g agree on epoch, leader
// and roster, with want proxies and candidates.
func (s *sim) settled(g int, proxies, candidates int) bool {
	var ref *Election
	for _, nd := range s.up() {
		if g >= 0 && nd.group != g {
			continue
		}
		e := nd.e
		if e.Leader() == "" {
			return false
		}
		if ref == nil {
			ref = e
			continue
		}
		if e.Epoch() != ref.Epoch() || e.Leader() != ref.Leader() ||
			!slices.Equal(ids(e.roster), ids(ref.roster)) {
			return false
		}
	}
	return ref != nil && len(s.withRole(g, RoleProxy)) == proxies &&
		len(s.withRole(g, RoleCandidate)) == candidates
}

func (s *sim) node(id peer.ID) *simNode { return s.byID[id] }
