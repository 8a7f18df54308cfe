package election

import (
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Role is a node's part in its domain.
type Role int

// Roles (draft §6): the active proxy, the inactivated proxy (candidate), and
// every other node.
const (
	RolePeer Role = iota
	RoleCandidate
	RoleProxy
)

// String returns "peer", "candidate" or "proxy".
func (r Role) String() string {
	switch r {
	case RoleProxy:
		return "proxy"
	case RoleCandidate:
		return "candidate"
	default:
		return "peer"
	}
}

// Status is a snapshot of what a node knows about its domain's election.
type Status struct {
	Self       peer.ID
	Utility    float64
	Role       Role
	Epoch      uint64
	Leader     peer.ID  // the leading proxy; empty while there is none
	Proxies    []Member // leader first
	Candidates []Member // in succession order
	Spares     []Member
}

type bid struct {
	utility float64
	at      time.Time
}

// Election is the pure election state machine of one node. It starts no
// goroutines, does no I/O and never reads the clock: time enters through
// Tick, messages through Step, and messages to send leave through Ready.
// An Election is not safe for concurrent use; the runner owns it.
//
// The roster is an ordered list: its first Proxies members are the proxies,
// the first of them the leader, who maintains the list and announces it; the
// rest are the candidates. Every member but the leader sends Hello to the
// leader; when Hellos go unanswered, the member of rank r takes over after
// MissedHellos+2(r-1) misses with epoch+1.
type Election struct {
	self    peer.ID
	cfg     Config
	metrics Metrics
	util    float64

	now     time.Time
	started bool
	left    bool

	epoch       uint64
	leader      peer.ID
	roster      []Member
	spares      []Member
	floor       float64
	lastContact time.Time // last message from the leader, or start

	// as a member of the roster
	nextHello time.Time
	helloSent time.Time
	helloOut  bool
	missed    int

	// as the leader
	lastHeard    map[peer.ID]time.Time
	nextAnnounce time.Time
	floorStep    float64

	// bids seen, and the election in progress
	bids          map[peer.ID]bid
	electingSince time.Time
	lastBid       time.Time
	seenEpoch     uint64    // highest epoch announced to this node (within MaxEpochStep)
	lastBump      time.Time // last time this leader raised its epoch over a rival
	refusal       string    // why the last message's claim was ignored (TakeRefusal)

	out []Outgoing
}

// New returns the election state machine of node self. Zero fields of cfg
// take their defaults.
func New(self peer.ID, cfg Config) (*Election, error) {
	if self == "" {
		return nil, fmt.Errorf("%w: empty peer ID", ErrBadConfig)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Election{
		self:      self,
		cfg:       cfg,
		bids:      make(map[peer.ID]bid),
		lastHeard: make(map[peer.ID]time.Time),
		floor:     NotEligible,
	}
	e.util = e.ownUtility()
	return e, nil
}

// Config returns the configuration with defaults filled in.
func (e *Election) Config() Config { return e.cfg }

// SetMetrics updates the node's metrics and utility. A node that opts out
// while proxy or candidate hands its role over as in Leave, but stays in the
// domain as a peer.
func (e *Election) SetMetrics(m Metrics) {
	e.metrics = m
	e.util = e.ownUtility()
	if e.left {
		return
	}
	if i := e.rank(e.self); i >= 0 && e.leader != "" {
		e.roster[i].Utility = max(e.util, 0)
	}
	if e.util < 0 {
		e.resign()
	}
}

// ownUtility is the node's utility as others can observe it (Credible with
// its own online time and reachability).
func (e *Election) ownUtility() float64 {
	m := e.metrics
	return Credible(Utility(m, e.cfg.Weights), m.Online, m.Reachability, e.cfg.Weights)
}

// Utility returns the node's current utility: Utility of its metrics, capped
// as others can observe it (Credible).
func (e *Election) Utility() float64 { return e.util }

// MaxEpochStep bounds how far a message from anyone but the node's own
// leader may move the node's epoch forward at once.
const MaxEpochStep = 1 << 20

// maxRivalLead bounds how far ahead of its own epoch a leader follows a
// rival it is clearly better than: it raises its epoch over a rival at most
// that far ahead (a healed partition's other side has had fewer failovers
// than that), so a member that announces a huge epoch cannot drive the
// domain's epoch up.
const maxRivalLead = 64

// nextEpoch returns the epoch after ep, saturating at MaxEpoch.
func nextEpoch(ep uint64) uint64 {
	if ep >= MaxEpoch {
		return MaxEpoch
	}
	return ep + 1
}

// newer reports whether epoch ep may follow the node's epoch: higher, by at
// most MaxEpochStep (at the saturated MaxEpoch, equal counts).
func (e *Election) newer(ep uint64) bool {
	if ep == MaxEpoch && e.epoch == MaxEpoch {
		return true
	}
	return ep > e.epoch && ep-e.epoch <= MaxEpochStep
}

// Tick tells the machine that the time is now. The runner calls it often
// (every HelloInterval/10 or so) and before each Step; time never goes back.
func (e *Election) Tick(now time.Time) {
	if now.After(e.now) {
		e.now = now
	}
	if !e.started {
		e.started = true
		e.lastContact = e.now
	}
	if e.left {
		return
	}
	e.expireBids()
	switch {
	case e.leader == e.self:
		e.tickLeader()
	case e.leader != "" && e.rank(e.self) > 0:
		e.tickMember()
	default:
		e.tickPeer()
	}
}

// Step hands the machine a received message. The caller must have checked
// that m.From is the message's authenticated author. It returns an error
// wrapping ErrBadMessage for an invalid message.
func (e *Election) Step(m Message) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if m.From == e.self || e.left {
		return nil
	}
	if !e.started {
		e.started = true
		e.lastContact = e.now
	}
	switch m.Type {
	case MsgAnnounce, MsgHelloAck, MsgHandoff:
		e.onAnnounce(m)
	case MsgHello:
		e.onHello(m)
	case MsgBid:
		e.onBid(m)
	}
	return nil
}

// TakeRefusal returns why the core ignored the leadership claim of the
// last message stepped ("not_leader": a Handoff not from the node's leader;
// "not_followed": an announced leader the node does not follow; "epoch": an
// epoch too far ahead), or "", and clears it.
func (e *Election) TakeRefusal() string {
	r := e.refusal
	e.refusal = ""
	return r
}

// Ready returns the messages to send and clears the queue.
func (e *Election) Ready() []Outgoing {
	out := e.out
	e.out = nil
	return out
}

// HasReady reports whether messages are waiting.
func (e *Election) HasReady() bool { return len(e.out) > 0 }

// Leave gives up the node's role for good: a leader hands its role and a new
// epoch to its successor (the next proxy, else the best candidate), a member
// tells the leader it leaves. The messages are in Ready; afterwards the node
// is a peer and ignores all input.
func (e *Election) Leave() {
	if e.left {
		return
	}
	e.resign()
	e.left = true
	e.roster, e.spares, e.leader = nil, nil, ""
}

// Left reports whether Leave was called.
func (e *Election) Left() bool { return e.left }

// Role returns the node's current role.
func (e *Election) Role() Role {
	if e.left || e.leader == "" {
		return RolePeer
	}
	if e.leader == e.self {
		return RoleProxy
	}
	switch i := e.rank(e.self); {
	case i < 0:
		return RolePeer
	case i < e.cfg.Proxies:
		return RoleProxy
	default:
		return RoleCandidate
	}
}

// Epoch returns the epoch (term) of the leader the node follows or is.
func (e *Election) Epoch() uint64 { return e.epoch }

// Leader returns the leading proxy, or "" while there is none.
func (e *Election) Leader() peer.ID { return e.leader }

// Proxies returns the domain's proxies as this node knows them, leader first.
func (e *Election) Proxies() []Member {
	return slices.Clone(e.roster[:min(e.cfg.Proxies, len(e.roster))])
}

// Candidates returns the domain's candidates in succession order.
func (e *Election) Candidates() []Member {
	if len(e.roster) <= e.cfg.Proxies {
		return nil
	}
	return slices.Clone(e.roster[e.cfg.Proxies:])
}

// Status returns a snapshot of the node's view.
func (e *Election) Status() Status {
	return Status{
		Self:       e.self,
		Utility:    e.util,
		Role:       e.Role(),
		Epoch:      e.epoch,
		Leader:     e.leader,
		Proxies:    e.Proxies(),
		Candidates: e.Candidates(),
		Spares:     slices.Clone(e.spares),
	}
}

func (e *Election) rank(id peer.ID) int {
	for i, m := range e.roster {
		if m.ID == id {
			return i
		}
	}
	return -1
}

func (e *Election) send(to peer.ID, m Message) {
	m.From = e.self
	e.out = append(e.out, Outgoing{To: to, Message: m})
}

func (e *Election) announce() {
	e.send("", e.rosterMessage(MsgAnnounce))
	e.nextAnnounce = e.now.Add(e.cfg.HelloInterval)
}

func (e *Election) rosterMessage(t MsgType) Message {
	return Message{Type: t, Epoch: e.epoch, Utility: max(e.util, 0),
		Roster: slices.Clone(e.roster), Spares: slices.Clone(e.spares), Floor: e.floor}
}

func (e *Election) expireBids() {
	ttl := max(e.cfg.bidTTL(), e.cfg.spareTTL())
	for id, b := range e.bids {
		if e.now.Sub(b.at) > ttl {
			delete(e.bids, id)
		}
	}
}

// ---- leader ----

func (e *Election) tickLeader() {
	changed := false
	dead := e.cfg.deadAfter()
	kept := e.roster[:1]
	for _, m := range e.roster[1:] {
		if e.now.Sub(e.lastHeard[m.ID]) > dead {
			delete(e.lastHeard, m.ID)
			delete(e.bids, m.ID)
			changed = true
			continue
		}
		kept = append(kept, m)
	}
	e.roster = kept
	if e.rebuild() {
		changed = true
	}
	periodic := !e.now.Before(e.nextAnnounce)
	if periodic && len(e.roster)+len(e.spares) < e.cfg.Proxies+e.cfg.Candidates+e.cfg.Spares {
		// Lists not full: invite a slightly wider band of peers to bid, the
		// band doubling each interval until enough bid. Each band then holds
		// about as many peers as all before it (for a smooth distribution of
		// utilities), so the leader gets O(missing) bids, not O(N).
		if e.floorStep == 0 {
			e.floorStep = minFloorStep
		}
		e.floor = max(e.floor-e.floorStep, NotEligible)
		e.floorStep = min(2*e.floorStep, 1)
	}
	if changed || periodic {
		e.announce()
	}
}

// rebuild recomputes the roster and spares of a leader: proxies keep their
// places (no preemption of a serving proxy); free proxy places go to the best
// candidates; candidates and spares are the best of the live candidates and
// bidders. It reports whether the member lists changed.
func (e *Election) rebuild() bool {
	before := append(ids(e.roster), ids(e.spares)...)
	e.roster[0] = Member{ID: e.self, Utility: max(e.util, 0)}
	nProxies := min(e.cfg.Proxies, len(e.roster))
	proxies := slices.Clone(e.roster[:nProxies])
	listed := make(map[peer.ID]bool)
	for _, m := range proxies {
		listed[m.ID] = true
	}
	var pool []Member
	for _, m := range e.roster[nProxies:] {
		pool = append(pool, m)
		listed[m.ID] = true
	}
	ttl := e.cfg.spareTTL()
	for id, b := range e.bids {
		if listed[id] || id == e.self || b.utility < 0 || e.now.Sub(b.at) > ttl {
			continue
		}
		pool = append(pool, Member{ID: id, Utility: b.utility})
	}
	slices.SortFunc(pool, func(a, b Member) int {
		if Better(a, b) {
			return -1
		}
		if Better(b, a) {
			return 1
		}
		return 0
	})
	for len(proxies) < e.cfg.Proxies && len(pool) > 0 {
		proxies = append(proxies, pool[0])
		pool = pool[1:]
	}
	nc := min(e.cfg.Candidates, len(pool))
	e.roster = append(proxies, pool[:nc]...)
	pool = pool[nc:]
	e.spares = slices.Clone(pool[:min(e.cfg.Spares, len(pool))])
	for _, m := range e.roster[1:] {
		if _, ok := e.lastHeard[m.ID]; !ok {
			e.lastHeard[m.ID] = e.now // grace period for a new member
		}
	}
	for id := range e.lastHeard {
		if e.rank(id) < 0 {
			delete(e.lastHeard, id)
		}
	}
	if len(e.roster)+len(e.spares) >= e.cfg.Proxies+e.cfg.Candidates+e.cfg.Spares {
		all := append(slices.Clone(e.roster[1:]), e.spares...)
		worst := e.roster[0].Utility
		for _, m := range all {
			worst = min(worst, m.Utility)
		}
		e.floor = worst
		e.floorStep = 0
	} else if len(e.roster) > 0 {
		worst := e.roster[0].Utility
		for _, m := range append(slices.Clone(e.roster), e.spares...) {
			worst = min(worst, m.Utility)
		}
		e.floor = min(e.floor, worst)
		if e.floor < NotEligible {
			e.floor = NotEligible
		}
	}
	return !slices.Equal(before, append(ids(e.roster), ids(e.spares)...))
}

func ids(ms []Member) []peer.ID {
	out := make([]peer.ID, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// becomeLeader makes the node the leader of epoch with the given roster
// (whose first member is the node) and spares.
func (e *Election) becomeLeader(epoch uint64, roster, spares []Member) {
	e.epoch = epoch
	e.leader = e.self
	e.roster = append([]Member{{ID: e.self, Utility: max(e.util, 0)}}, without(roster, e.self)...)
	e.spares = without(spares, e.self)
	e.lastHeard = make(map[peer.ID]time.Time)
	e.floorStep = 0
	for _, m := range e.roster[1:] {
		e.lastHeard[m.ID] = e.now
	}
	for _, m := range e.spares {
		if b, ok := e.bids[m.ID]; !ok || b.at.Before(e.now) {
			e.bids[m.ID] = bid{utility: m.Utility, at: e.now}
		}
	}
	e.resetMember()
	e.electingSince = time.Time{}
	e.lastContact = e.now
	e.rebuild()
	e.announce()
}

func without(ms []Member, id peer.ID) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		if m.ID != id {
			out = append(out, m)
		}
	}
	return out
}

func (e *Election) onHello(m Message) {
	if e.leader != e.self {
		return
	}
	i := e.rank(m.From)
	if m.Leaving {
		if i > 0 {
			e.roster = slices.Delete(e.roster, i, i+1)
			delete(e.lastHeard, m.From)
			delete(e.bids, m.From)
			e.rebuild()
			e.announce()
		}
		return
	}
	if i > 0 {
		e.lastHeard[m.From] = e.now
		e.roster[i].Utility = max(m.Utility, 0)
	}
	e.send(m.From, e.rosterMessage(MsgHelloAck))
}

func (e *Election) onBid(m Message) {
	if m.Utility < 0 {
		delete(e.bids, m.From)
		return
	}
	e.bids[m.From] = bid{utility: m.Utility, at: e.now}
	if len(e.bids) > maxBids {
		e.dropWorstBid()
	}
	if e.leader == e.self && e.rank(m.From) < 0 {
		if e.rebuild() {
			e.announce()
		}
	}
}

func (e *Election) dropWorstBid() {
	var worst Member
	found := false
	for id, b := range e.bids {
		m := Member{ID: id, Utility: b.utility}
		if id != e.self && (!found || Better(worst, m)) {
			worst, found = m, true
		}
	}
	if found {
		delete(e.bids, worst.ID)
	}
}

// resign gives up the node's role: a leader hands over to its successor, a
// member tells the leader.
func (e *Election) resign() {
	switch {
	case e.leader == e.self:
		rest := slices.Clone(e.roster[1:])
		if len(rest) == 0 {
			// Nobody to hand over to: the domain elects anew.
			e.leader, e.roster, e.spares = "", nil, nil
			e.lastContact = e.now
			return
		}
		msg := Message{Type: MsgHandoff, Epoch: nextEpoch(e.epoch), Utility: max(e.util, 0),
			Roster: rest, Spares: slices.Clone(e.spares), Floor: e.floor}
		e.send(rest[0].ID, msg)
		msg.Type = MsgAnnounce
		e.send("", msg)
		e.epoch = msg.Epoch
		e.leader = rest[0].ID
		e.roster = rest
		e.lastHeard = make(map[peer.ID]time.Time)
		e.lastContact = e.now
	case e.leader != "" && e.rank(e.self) > 0:
		e.send(e.leader, Message{Type: MsgHello, Epoch: e.epoch, Utility: max(e.util, 0), Leaving: true})
		e.roster = without(e.roster, e.self)
		e.resetMember()
	}
}

// ---- member (non-leading proxy or candidate) ----

func (e *Election) resetMember() {
	e.missed = 0
	e.helloOut = false
	e.nextHello = e.now
}

// Unreachable tells the machine that a message to peer could not be
// delivered (the dial or the stream failed). A failed Hello to the leader
// counts as missed at once instead of after HelloTimeout, so a leader whose
// host is gone is detected sooner. Reports older than HelloTimeout are
// ignored.
func (e *Election) Unreachable(id peer.ID) {
	if e.left || id == "" || id != e.leader || id == e.self || !e.helloOut ||
		e.now.Sub(e.helloSent) >= e.cfg.HelloTimeout {
		return
	}
	e.helloOut = false
	e.missed++
	if r := e.rank(e.self); r > 0 && e.missed >= e.cfg.MissedHellos+2*(r-1) {
		e.takeover(r)
	}
}

func (e *Election) tickMember() {
	r := e.rank(e.self)
	if e.helloOut && e.now.Sub(e.helloSent) >= e.cfg.HelloTimeout {
		e.helloOut = false
		e.missed++
	}
	if e.missed >= e.cfg.MissedHellos+2*(r-1) {
		e.takeover(r)
		return
	}
	if !e.now.Before(e.nextHello) {
		if e.helloOut { // HelloTimeout == HelloInterval: the last one is lost
			e.missed++
		}
		e.send(e.leader, Message{Type: MsgHello, Epoch: e.epoch, Utility: max(e.util, 0)})
		e.helloOut = true
		e.helloSent = e.now
		e.nextHello = e.now.Add(e.cfg.HelloInterval)
	}
}

// takeover makes the member of rank r the leader of a new epoch; the leader
// and the members ranked before r are presumed dead.
func (e *Election) takeover(r int) {
	for _, m := range e.roster[:r] {
		delete(e.bids, m.ID) // presumed dead: do not bring them back as spares
	}
	roster := slices.Clone(e.roster[r:])
	e.becomeLeader(nextEpoch(e.epoch), roster, e.spares)
}

// ---- everybody ----

// clearlyBetter reports whether a's utility exceeds b's by more than Margin.
func clearlyBetter(a, b Member) bool { return a.Utility > b.Utility+Margin }

// prefer reports whether leader a at epoch ea is to be followed rather than
// leader b at epoch eb: the clearly better one; within Margin the higher
// epoch, then the lower peer ID. Within Margin the utilities themselves are
// not compared: two nodes observe each other differently, and only a rule
// both apply the same way settles a split.
func prefer(a Member, ea uint64, b Member, eb uint64) bool {
	switch {
	case clearlyBetter(a, b):
		return true
	case clearlyBetter(b, a):
		return false
	case ea != eb:
		return ea > eb
	}
	return a.ID < b.ID
}

// current returns the leader the node follows, with the utility it knows.
func (e *Election) current() Member {
	if e.leader == e.self {
		return Member{ID: e.self, Utility: max(e.util, 0)}
	}
	if len(e.roster) > 0 && e.roster[0].ID == e.leader {
		return e.roster[0]
	}
	return Member{ID: e.leader}
}

// follows decides whether the node switches to the leader l announced in m
// (l is neither the node nor its current leader at its epoch):
//
//	(a) its own leader hands over or redirects it;
//	(b) it has no leader, and is not itself clearly better than l;
//	(c) its leader has been silent for quietAfter and l is in its roster
//	    (failover), at a newer epoch;
//	(d) l is observed (a direct neighbour) and preferred to its leader
//	    (prefer), at a newer epoch or an equal one.
func (e *Election) follows(m Message, l Member) bool {
	switch {
	case e.leader != "" && m.From == e.leader && e.leader != e.self:
		return m.Epoch >= e.epoch
	case e.leader == "":
		return e.util < 0 || !clearlyBetter(Member{ID: e.self, Utility: e.util}, l)
	case e.rank(l.ID) > 0 && e.now.Sub(e.lastContact) >= e.cfg.quietAfter() && e.newer(m.Epoch):
		return true
	case m.Observed && (e.newer(m.Epoch) || m.Epoch == e.epoch) && prefer(l, m.Epoch, e.current(), e.epoch):
		return true
	}
	return false
}

func (e *Election) onAnnounce(m Message) {
	l := m.Roster[0]
	if m.Epoch > e.seenEpoch && (m.Epoch <= e.epoch || m.Epoch-e.epoch <= MaxEpochStep) {
		e.seenEpoch = m.Epoch
	}
	if l.ID == e.self {
		// Named leader: a handoff (or its broadcast copy) to this node,
		// taken only from its own leader.
		switch {
		case e.leader == e.self:
		case e.leader == "" || m.From != e.leader:
			e.refusal = "not_leader"
		case !e.newer(m.Epoch):
			e.refusal = "epoch"
		case e.util >= 0:
			delete(e.bids, m.From) // the leaver
			e.becomeLeader(m.Epoch, m.Roster, m.Spares)
		}
		return
	}
	switch {
	case l.ID == e.leader && e.leader != e.self && m.From == l.ID && m.Epoch >= e.epoch:
		// The current leader: refresh (its epoch may have risen over a rival's).
		e.epoch = m.Epoch
	case e.follows(m, l):
		if e.leader == e.self {
			e.lastHeard = make(map[peer.ID]time.Time)
			// Redirect the nodes that follow this one.
			e.send("", Message{Type: MsgAnnounce, Epoch: m.Epoch, Utility: max(e.util, 0),
				Roster: slices.Clone(m.Roster), Spares: slices.Clone(m.Spares), Floor: m.Floor})
		}
		elector := e.rank(e.self) >= 0
		e.leader = l.ID
		e.epoch = m.Epoch
		e.resetMember()
		if elector && e.util >= 0 {
			// A member of the roster it leaves (an elector of the domain's
			// proxy record) tells its new leader at once that it follows it:
			// the runner attaches its endorsement to the Hello.
			e.send(l.ID, Message{Type: MsgHello, Epoch: m.Epoch, Utility: max(e.util, 0)})
		}
	default:
		if m.Epoch > e.epoch && m.Epoch-e.epoch > MaxEpochStep {
			e.refusal = "epoch"
		} else if m.Epoch > e.epoch || l.ID != e.leader {
			e.refusal = "not_followed"
		}
		if e.leader == e.self {
			// A rival leader this one is preferred to: make sure it wins
			// on epochs too, and let the rival's nodes hear it soon.
			self := e.current()
			if m.Epoch >= e.epoch && m.Epoch-e.epoch <= maxRivalLead && clearlyBetter(self, l) && m.Epoch < MaxEpoch &&
				(e.lastBump.IsZero() || e.now.Sub(e.lastBump) >= e.cfg.HelloInterval) {
				e.epoch = nextEpoch(m.Epoch)
				e.lastBump = e.now
			}
			e.nextAnnounce = e.now
		}
		return
	}
	wasMember := e.rank(e.self) > 0
	e.roster = slices.Clone(m.Roster)
	e.spares = slices.Clone(m.Spares)
	e.floor = m.Floor
	e.lastContact = e.now
	e.electingSince = time.Time{}
	e.missed = 0
	if m.Type == MsgHelloAck {
		e.helloOut = false
	}
	if !wasMember && e.rank(e.self) > 0 {
		e.resetMember() // new member: say Hello at once
	}
}

func (e *Election) tickPeer() {
	if e.leader != "" && e.now.Sub(e.lastContact) > e.cfg.ElectionTimeout {
		e.leader, e.roster, e.spares = "", nil, nil // the leader is gone
	}
	if e.leader == "" {
		if e.now.Sub(e.lastContact) > e.cfg.ElectionTimeout {
			e.elect()
		}
		return
	}
	if e.util < 0 || e.rank(e.self) >= 0 {
		return
	}
	spare := slices.ContainsFunc(e.spares, func(m Member) bool { return m.ID == e.self })
	if !spare && !(e.util > e.floor) {
		return
	}
	if e.lastBid.IsZero() || e.now.Sub(e.lastBid) >= e.cfg.BidInterval {
		e.send(e.leader, Message{Type: MsgBid, Epoch: e.epoch, Utility: e.util})
		e.lastBid = e.now
	}
}

// elect runs the election while no leader is known: the best nodes bid by
// broadcast; after electionWindow the best live bidder declares itself.
func (e *Election) elect() {
	if e.electingSince.IsZero() {
		e.electingSince = e.now
	}
	if e.util < 0 {
		return
	}
	self := Member{ID: e.self, Utility: e.util}
	ttl := e.cfg.bidTTL()
	better := 0
	best := self
	for id, b := range e.bids {
		if id == e.self || e.now.Sub(b.at) > ttl || b.utility < 0 {
			continue
		}
		m := Member{ID: id, Utility: b.utility}
		if Better(m, self) {
			better++
		}
		if Better(m, best) {
			best = m
		}
	}
	if better >= e.cfg.Proxies+e.cfg.Candidates+e.cfg.Spares {
		return // enough better nodes: stay quiet
	}
	if e.lastBid.IsZero() || e.now.Sub(e.lastBid) >= e.cfg.HelloInterval {
		e.send("", Message{Type: MsgBid, Epoch: e.epoch, Utility: e.util})
		e.lastBid = e.now
	}
	if best.ID == e.self && e.now.Sub(e.electingSince) >= e.cfg.electionWindow() {
		e.becomeLeader(nextEpoch(max(e.epoch, e.seenEpoch)), []Member{self}, nil)
	}
}
