package election

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/hiersip/hiersip/domains"
)

// HelloProtocol carries Hello, HelloAck, unicast Bid and Handoff messages,
// one message per stream (DESIGN §3).
const HelloProtocol protocol.ID = "/hiersip/hello/1.0.0"

// Topic returns the gossipsub topic of a domain's election announcements.
func Topic(domain string) string { return "/hiersip/" + domain + "/election" }

// Duties are what a node does while it is a proxy: join the global overlay,
// publish the domain's Overlay-Resource-ID and the domain's "local proxy"
// record (Promote), and undo all of it (Demote). The runner calls them from
// one goroutine, never concurrently, and retries a failed call. Promote is
// called again when the epoch changes while the node stays proxy, so it must
// be idempotent. Demote follows a Promote that failed as well as one that
// succeeded (a failed Promote may have done part of its work), so it must be
// idempotent too. Promote receives what the runner knew when it promoted the
// node; the duties need not read the runner back.
type Duties interface {
	Promote(ctx context.Context, p Promotion) error
	Demote(ctx context.Context) error
}

// Promotion is the runner's state when it promotes its node: the epoch, the
// domain's proxies (best first) and candidates at that epoch, which together
// are the electors of the next proxy, and the endorsements of this node as
// leader the runner holds (none when another proxy leads). Endorsements that
// arrive later are read with Runner.Endorsements, announced by Subscribe.
type Promotion struct {
	Epoch        uint64
	Proxies      []peer.ID
	Candidates   []peer.ID
	Endorsements []domains.Endorsement
}

// State is what a runner knows about its domain's election.
type State struct {
	Status
	Domain       string
	Reachability Reachability
	// Serving reports whether Duties.Promote succeeded for the current epoch.
	Serving bool
	// Endorsed lists the roster members whose endorsement of this node as
	// leader at Epoch it holds (Runner.Endorsements), sorted.
	Endorsed []peer.ID
}

type options struct {
	cfg          Config
	clock        clock.Clock
	log          *slog.Logger
	bandwidth    float64
	cpu          float64
	weight       float64
	optOut       bool
	forcedReach  *Reachability
	leaveTimeout time.Duration
	dutyTimeout  time.Duration
	tick         time.Duration

	member     func(peer.ID) bool
	minAge     time.Duration
	cert       []byte
	verifyCert func(peer.ID, []byte) error
	refuse     func(reason string)
	observe    func(peer.ID) (time.Duration, Reachability, bool)
}

// Option configures a Runner.
type Option func(*options) error

// WithConfig sets the election configuration (default DefaultConfig()).
func WithConfig(c Config) Option { return func(o *options) error { o.cfg = c; return nil } }

// WithClock sets the clock that ticks the election and stamps its messages
// (default the system clock). Network deadlines and the age of connections
// stay on the system clock: the network runs in real time.
func WithClock(c clock.Clock) Option {
	return func(o *options) error {
		if c == nil {
			return fmt.Errorf("%w: nil clock", ErrBadConfig)
		}
		o.clock = c
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrBadConfig)
		}
		o.log = l
		return nil
	}
}

// WithBandwidth sets the node's upstream bandwidth in bit/s (default 0:
// unknown, scores nothing).
func WithBandwidth(bps float64) Option {
	return func(o *options) error { o.bandwidth = bps; return nil }
}

// WithCPU sets the node's CPU capacity in cores (default runtime.NumCPU()).
func WithCPU(cores float64) Option { return func(o *options) error { o.cpu = cores; return nil } }

// WithWeight sets the operator weight (default 1).
func WithWeight(w float64) Option { return func(o *options) error { o.weight = w; return nil } }

// WithOptOut keeps the node from ever becoming proxy or candidate.
func WithOptOut() Option { return func(o *options) error { o.optOut = true; return nil } }

// WithReachability forces the node's reachability instead of AutoNAT's verdict.
func WithReachability(r Reachability) Option {
	return func(o *options) error { o.forcedReach = &r; return nil }
}

// WithLeaveTimeout bounds the graceful handoff in Close (default 2 s).
func WithLeaveTimeout(d time.Duration) Option {
	return func(o *options) error { o.leaveTimeout = d; return nil }
}

// WithDutyTimeout bounds one call of Duties.Promote or Demote (default 10 s).
func WithDutyTimeout(d time.Duration) Option {
	return func(o *options) error { o.dutyTimeout = d; return nil }
}

// WithMembership sets who is a member of the domain (default: every peer).
// The runner takes messages only from members, and from peers connected for
// at least the minimum member age; on gossip, from the neighbour that
// forwarded the message (every hop checks its own neighbour).
func WithMembership(member func(peer.ID) bool) Option {
	return func(o *options) error { o.member = member; return nil }
}

// WithMinMemberAge sets how long a peer must have been connected before its
// messages count (default: two Hello intervals, 1 s; less than the election
// timeout, so that the nodes a domain starts with take part in its first
// election).
func WithMinMemberAge(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("%w: negative minimum member age", ErrBadConfig)
		}
		o.minAge = d
		return nil
	}
}

// WithCertificates makes the election enrolled: every message must carry a
// certificate that verify accepts for its sender (package domains: the
// authority's, issued to the sender, valid, unrevoked), and the node sends
// own with its messages. A node without a certificate (own nil) never
// becomes proxy or candidate.
func WithCertificates(own []byte, verify func(sender peer.ID, cert []byte) error) Option {
	return func(o *options) error {
		if verify == nil {
			return fmt.Errorf("%w: nil certificate check", ErrBadConfig)
		}
		o.cert, o.verifyCert = own, verify
		if own == nil {
			o.optOut = true
		}
		return nil
	}
}

// WithRefusalHook sets a function called with a reason for every message
// the runner refuses: "malformed", "wrong_sender", "not_member", "too_new",
// "uncertified", "replay", "epoch", "inflated", "unexpected". It must be
// quick and safe for concurrent use.
func WithRefusalHook(f func(reason string)) Option {
	return func(o *options) error { o.refuse = f; return nil }
}

// WithObserver replaces how the runner observes a peer: how long it has
// been connected and the reachability it is believed to have (default:
// from the host's connections to it: since the oldest open one; private if
// all are relayed, public only if this host dialed one directly, unknown
// otherwise). ok is false for a peer not connected.
func WithObserver(f func(peer.ID) (online time.Duration, reach Reachability, ok bool)) Option {
	return func(o *options) error { o.observe = f; return nil }
}

// Runner runs a node's election: it owns an Election, feeds it ticks from
// the clock and messages from the network, sends what it produces, and calls
// the Duties when the node's proxy role changes.
type Runner struct {
	h      host.Host
	ps     *pubsub.PubSub
	domain string
	duties Duties
	o      options
	log    *slog.Logger

	e     *Election
	start time.Time
	reach Reachability

	topic *pubsub.Topic
	sub   *pubsub.Subscription
	rsub  event.Subscription

	inbox   chan Message
	leaveCh chan chan struct{}
	reachCh chan Reachability
	failCh  chan peer.ID
	dutyCh  chan dutyReq
	bcast   chan []byte
	sendSem chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	key      crypto.PrivKey
	seqs     seqTable
	lastSeq  atomic.Uint64 // own message numbers
	myEnd    endorseCache
	endEpoch uint64                // loop: epoch of the endorsements held
	ends     map[peer.ID][]byte    // loop: endorsements of this leader at endEpoch
	lastDial map[peer.ID]time.Time // loop: rival leaders dialed

	mu        sync.Mutex
	endorsed  []domains.Endorsement
	state     State
	subs      map[chan State]struct{}
	started   bool
	closed    bool
	closeOnce sync.Once
	closeErr  error
}

type dutyReq struct {
	proxy bool
	promo Promotion  // when proxy
	done  chan error // Close: receives the result of the final Demote
}

// NewRunner returns the election runner of host h in domain, announcing on
// the gossipsub ps (which the caller owns and closes). duties may be nil.
func NewRunner(h host.Host, ps *pubsub.PubSub, domain string, duties Duties, opts ...Option) (*Runner, error) {
	if h == nil || ps == nil {
		return nil, fmt.Errorf("%w: nil host or pubsub", ErrBadConfig)
	}
	if err := domains.ValidateDomain(domain); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	o := options{
		clock:        clock.New(),
		log:          slog.New(slog.DiscardHandler),
		cpu:          float64(runtime.NumCPU()),
		leaveTimeout: 2 * time.Second,
		dutyTimeout:  10 * time.Second,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	e, err := New(h.ID(), o.cfg)
	if err != nil {
		return nil, err
	}
	o.cfg = e.Config()
	if o.minAge == 0 {
		o.minAge = 2 * o.cfg.HelloInterval
	}
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, fmt.Errorf("%w: the host's peerstore has no private key", ErrBadConfig)
	}
	o.tick = max(o.cfg.HelloInterval/10, time.Millisecond)
	if o.leaveTimeout <= 0 || o.dutyTimeout <= 0 {
		return nil, fmt.Errorf("%w: non-positive timeout", ErrBadConfig)
	}
	if duties == nil {
		duties = noDuties{}
	}
	r := &Runner{
		h: h, ps: ps, domain: domain, duties: duties, o: o,
		log:      o.log.With("domain", domain),
		e:        e,
		inbox:    make(chan Message, 256),
		leaveCh:  make(chan chan struct{}),
		reachCh:  make(chan Reachability, 4),
		failCh:   make(chan peer.ID, 16),
		dutyCh:   make(chan dutyReq, 1),
		bcast:    make(chan []byte, 64),
		sendSem:  make(chan struct{}, 64),
		subs:     make(map[chan State]struct{}),
		key:      key,
		ends:     make(map[peer.ID][]byte),
		lastDial: make(map[peer.ID]time.Time),
	}
	if r.o.observe == nil {
		r.o.observe = r.observeConns
	}
	if o.forcedReach != nil {
		r.reach = *o.forcedReach
	}
	r.start = o.clock.Now()
	e.SetMetrics(r.metrics())
	r.state = State{Status: e.Status(), Domain: domain, Reachability: r.reach}
	return r, nil
}

type noDuties struct{}

func (noDuties) Promote(context.Context, Promotion) error { return nil }
func (noDuties) Demote(context.Context) error             { return nil }

// Start joins the domain's election topic, registers the Hello protocol and
// starts the loop. It fails if the runner was started or closed before.
func (r *Runner) Start() (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("election: runner closed: %w", net.ErrClosed)
	}
	if r.started {
		return errors.New("election: runner already started")
	}
	topic := Topic(r.domain)
	self := r.h.ID()
	if err := r.ps.RegisterTopicValidator(topic, func(_ context.Context, from peer.ID, msg *pubsub.Message) bool {
		if from == self {
			return true
		}
		m, err := Decode(msg.Data)
		switch {
		case err != nil:
			return r.refused(decodeReason(err))
		case m.From != msg.GetFrom():
			return r.refused("wrong_sender")
		case m.Type != MsgAnnounce && m.Type != MsgBid:
			return r.refused("unexpected")
		}
		if why := r.admit(from, m); why != "" {
			return r.refused(why)
		}
		if m.Type == MsgBid && from == m.From {
			// The first hop polices a bidder's claim: no more than it observes.
			if online, reach, ok := r.o.observe(m.From); ok && m.Utility > Credible(m.Utility, online, reach, r.o.cfg.Weights)+Margin {
				return r.refused("inflated")
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("election: validator: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.ps.UnregisterTopicValidator(topic))
			if r.sub != nil {
				r.sub.Cancel()
			}
			if r.topic != nil {
				err = errors.Join(err, r.topic.Close())
			}
			if r.rsub != nil {
				err = errors.Join(err, r.rsub.Close())
			}
		}
	}()
	if r.topic, err = r.ps.Join(topic); err != nil {
		return fmt.Errorf("election: join %s: %w", topic, err)
	}
	if r.sub, err = r.topic.Subscribe(); err != nil {
		return fmt.Errorf("election: subscribe %s: %w", topic, err)
	}
	if r.o.forcedReach == nil {
		if r.rsub, err = r.h.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged)); err != nil {
			return fmt.Errorf("election: reachability events: %w", err)
		}
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.start = r.o.clock.Now()
	r.h.SetStreamHandler(HelloProtocol, r.handleStream)
	r.started = true

	r.wg.Add(4)
	go r.loop()
	go r.readTopic()
	go r.broadcaster()
	go r.dutyWorker()
	if r.rsub != nil {
		r.wg.Add(1)
		go r.readReachability()
	}
	r.log.Debug("election started", "self", self)
	return nil
}

// State returns the runner's current view of its domain.
func (r *Runner) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state
	s.Proxies = slices.Clone(s.Proxies)
	s.Candidates = slices.Clone(s.Candidates)
	s.Spares = slices.Clone(s.Spares)
	s.Endorsed = slices.Clone(s.Endorsed)
	return s
}

// Endorsements returns the endorsements of this node as the domain's leader
// at epoch that it holds: its roster members' (from their Hellos) and its
// predecessor's (from the Handoff), for the proxy record's chain of custody.
// It returns none for another epoch or when the node does not lead.
func (r *Runner) Endorsements(epoch uint64) []domains.Endorsement {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Epoch != epoch || r.state.Leader != r.h.ID() {
		return nil
	}
	return slices.Clone(r.endorsed)
}

// Subscribe returns a channel that holds the latest State after every
// change (older undelivered states are replaced), and a function that ends
// the subscription. The channel is closed by cancel or Close.
func (r *Runner) Subscribe() (<-chan State, func()) {
	ch := make(chan State, 1)
	r.mu.Lock()
	if r.closed {
		close(ch)
		r.mu.Unlock()
		return ch, func() {}
	}
	r.subs[ch] = struct{}{}
	ch <- r.state
	r.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if _, ok := r.subs[ch]; ok {
				delete(r.subs, ch)
				close(ch)
			}
		})
	}
}

// Close hands the node's role over (bounded by the leave timeout), demotes
// it, stops all goroutines and leaves the topic. It does not close the host
// or the pubsub. A second Close returns an error wrapping net.ErrClosed.
func (r *Runner) Close() error {
	first := false
	r.closeOnce.Do(func() {
		first = true
		r.mu.Lock()
		started := r.started
		r.closed = true
		r.mu.Unlock()
		if started {
			r.closeErr = r.shutdown()
		}
		r.mu.Lock()
		for ch := range r.subs {
			close(ch)
		}
		clear(r.subs)
		r.mu.Unlock()
	})
	if !first {
		return fmt.Errorf("election: runner closed: %w", net.ErrClosed)
	}
	return r.closeErr
}

func (r *Runner) shutdown() error {
	// 1. Hand over: the loop calls Leave and sends the handoff synchronously.
	done := make(chan struct{})
	select {
	case r.leaveCh <- done:
		<-done
	case <-r.ctx.Done():
	}
	// 2. Demote, bounded.
	var err error
	dr := dutyReq{proxy: false, done: make(chan error, 1)}
	r.requestDuty(dr)
	select {
	case err = <-dr.done:
	case <-time.After(r.o.dutyTimeout):
		err = errors.New("election: demote timed out")
	}
	// 3. Stop.
	r.h.RemoveStreamHandler(HelloProtocol)
	r.cancel()
	r.sub.Cancel()
	if r.rsub != nil {
		err = errors.Join(err, r.rsub.Close())
	}
	r.wg.Wait()
	err = errors.Join(err, r.topic.Close(), r.ps.UnregisterTopicValidator(Topic(r.domain)))
	return err
}

// ---- the loop ----

func (r *Runner) metrics() Metrics {
	return Metrics{
		Online:       r.o.clock.Now().Sub(r.start),
		Bandwidth:    r.o.bandwidth,
		CPU:          r.o.cpu,
		Reachability: r.reach,
		Weight:       r.o.weight,
		OptOut:       r.o.optOut,
	}
}

// dutyFailuresLogged is the number of duty calls failed in a row from which
// the runner logs them as errors (warnings before).
const dutyFailuresLogged = 5

const metricsInterval = 10 * time.Second

func (r *Runner) loop() {
	defer r.wg.Done()
	clk := r.o.clock
	t := clk.Ticker(r.o.tick)
	defer t.Stop()
	r.e.SetMetrics(r.metrics())
	r.e.Tick(clk.Now())
	lastMetrics := clk.Now()
	r.afterEvent()
	for {
		select {
		case <-r.ctx.Done():
			return
		case now := <-t.C:
			if now.Sub(lastMetrics) >= metricsInterval {
				r.e.SetMetrics(r.metrics())
				lastMetrics = now
			}
			r.e.Tick(clk.Now())
		case m := <-r.inbox:
			r.e.Tick(clk.Now())
			if !r.seqs.take(m.From, m.Seq) {
				r.refused("replay")
				break
			}
			r.annotate(&m)
			if err := r.e.Step(m); err != nil {
				r.log.Debug("election: bad message", "from", m.From, "err", err)
			}
			if why := r.e.TakeRefusal(); why != "" {
				r.refused(why)
			}
			r.collectEndorsement(m)
			r.dialRival(m)
		case id := <-r.failCh:
			r.e.Tick(clk.Now())
			r.e.Unreachable(id)
		case reach := <-r.reachCh:
			if r.o.forcedReach == nil && reach != r.reach {
				r.reach = reach
				r.e.SetMetrics(r.metrics())
				r.log.Info("reachability changed", "reachability", reach, "utility", r.e.Utility())
			}
		case done := <-r.leaveCh:
			r.e.Leave()
			r.sendNow(r.e.Ready())
			r.afterEvent()
			close(done)
			// Keep serving the stream handler until Close cancels.
			continue
		}
		r.afterEvent()
	}
}

// afterEvent sends what the core produced and publishes the new state.
func (r *Runner) afterEvent() {
	r.resetEndorsements()
	for _, o := range r.e.Ready() {
		r.prepare(&o.Message)
		b, err := Encode(o.Message)
		if err != nil {
			r.log.Error("election: encode", "err", err)
			continue
		}
		if o.To == "" {
			select {
			case r.bcast <- b:
			default:
				r.log.Warn("election: broadcast queue full, dropped", "type", o.Message.Type)
			}
			continue
		}
		select {
		case r.sendSem <- struct{}{}:
		default:
			r.log.Warn("election: too many sends in flight, dropped", "to", o.To, "type", o.Message.Type)
			continue
		}
		// A slow send is not cut short at HelloTimeout: its ack may still
		// arrive late and reset the miss count. The core ignores failure
		// reports older than HelloTimeout.
		timeout := r.o.cfg.HelloInterval
		r.wg.Add(1)
		go func(to peer.ID, b []byte, t MsgType) {
			defer r.wg.Done()
			defer func() { <-r.sendSem }()
			ctx, cancel := context.WithTimeout(r.ctx, timeout)
			defer cancel()
			if err := r.sendDirect(ctx, to, b); err != nil && r.ctx.Err() == nil {
				r.log.Debug("election: send", "to", to, "type", t, "err", err)
				if t == MsgHello {
					select {
					case r.failCh <- to:
					default:
					}
				}
			}
		}(o.To, b, o.Message.Type)
	}
	r.publishState()
}

// sendNow sends messages synchronously within the leave timeout (Close).
func (r *Runner) sendNow(out []Outgoing) {
	ctx, cancel := context.WithTimeout(r.ctx, r.o.leaveTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, o := range out {
		r.prepare(&o.Message)
		b, err := Encode(o.Message)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func(o Outgoing, b []byte) {
			defer wg.Done()
			var err error
			if o.To == "" {
				err = r.topic.Publish(ctx, b)
			} else {
				err = r.sendDirect(ctx, o.To, b)
			}
			if err != nil {
				r.log.Warn("election: handoff send failed", "to", o.To, "type", o.Message.Type, "err", err)
			}
		}(o, b)
	}
	wg.Wait()
}

func (r *Runner) publishState() {
	st := r.e.Status()
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.state
	next := State{Status: st, Domain: r.domain, Reachability: r.reach, Serving: old.Serving && st.Role == RoleProxy && st.Epoch == old.Epoch}
	for _, en := range r.endorsed {
		next.Endorsed = append(next.Endorsed, en.Peer)
	}
	slices.Sort(next.Endorsed)
	changed := old.Role != st.Role || old.Epoch != st.Epoch || old.Leader != st.Leader ||
		!slices.Equal(ids(old.Proxies), ids(st.Proxies)) || !slices.Equal(ids(old.Candidates), ids(st.Candidates)) ||
		old.Reachability != r.reach || old.Serving != next.Serving || !slices.Equal(old.Endorsed, next.Endorsed)
	r.state = next
	if old.Leader != st.Leader || old.Epoch != st.Epoch {
		r.log.Debug("election: leader", "leader", st.Leader, "epoch", st.Epoch, "role", st.Role)
	}
	if old.Role != st.Role || (st.Role == RoleProxy && old.Epoch != st.Epoch) {
		r.log.Info("election: role", "role", st.Role, "epoch", st.Epoch, "leader", st.Leader)
		d := dutyReq{proxy: st.Role == RoleProxy}
		if d.proxy {
			d.promo = Promotion{Epoch: st.Epoch, Proxies: ids(st.Proxies), Candidates: ids(st.Candidates)}
			if st.Leader == r.h.ID() {
				d.promo.Endorsements = slices.Clone(r.endorsed)
			}
		}
		r.requestDutyLocked(d)
	}
	if changed {
		r.notifyLocked()
	}
}

func (r *Runner) notifyLocked() {
	for ch := range r.subs {
		select {
		case <-ch:
		default:
		}
		ch <- r.state
	}
}

func (r *Runner) requestDuty(d dutyReq) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requestDutyLocked(d)
}

// requestDutyLocked replaces any pending duty request by d (latest wins);
// the replaced request's done channel is closed.
func (r *Runner) requestDutyLocked(d dutyReq) {
	for {
		select {
		case r.dutyCh <- d:
			return
		default:
		}
		select {
		case old := <-r.dutyCh:
			if old.done != nil {
				old.done <- nil // superseded
			}
		default:
		}
	}
}

// dutyWorker calls Duties.Promote and Demote so that the node serves as
// proxy exactly while its role is proxy. It retries a failed call a second
// (of the runner's clock) after it failed. A request with done (from Close)
// is the last: its result is reported and the worker ends.
func (r *Runner) dutyWorker() {
	defer r.wg.Done()
	var (
		serving  bool // the last Promote succeeded, and no Demote since
		promoted bool // Promote was called (whatever it returned), and no Demote since
		epoch    uint64
		want     dutyReq
		retry    *clock.Timer // armed after a failed call
		retryC   <-chan time.Time
		// failures counts the duty calls failed in a row.
		failures int
	)
	stopRetry := func() {
		if retry != nil {
			retry.Stop()
			retry, retryC = nil, nil
		}
	}
	defer stopRetry()
	apply := func() error {
		stopRetry()
		ctx, cancel := context.WithTimeout(r.ctx, r.o.dutyTimeout)
		defer cancel()
		var err error
		defer func() {
			if err == nil {
				failures = 0
			}
		}()
		switch {
		case want.proxy && (!serving || epoch != want.promo.Epoch):
			promoted = true
			if err = r.duties.Promote(ctx, want.promo); err == nil {
				serving, epoch = true, want.promo.Epoch
				r.setServing(want.promo.Epoch)
			}
		case !want.proxy && promoted:
			if err = r.duties.Demote(ctx); err == nil {
				serving, promoted = false, false
			}
		}
		if err != nil {
			// A failure right after an election is usual (a record of the
			// epoch before still held, a rival of the same epoch not yet
			// stepped down): a warning while retries may mend it, an error
			// once they keep failing.
			failures++
			level := slog.LevelWarn
			if failures >= dutyFailuresLogged {
				level = slog.LevelError
			}
			r.log.Log(r.ctx, level, "election: duties failed, retrying in 1s", "proxy", want.proxy,
				"epoch", want.promo.Epoch, "failures", failures, "err", err)
			retry = r.o.clock.Timer(time.Second)
			retryC = retry.C
		}
		return err
	}
	for {
		select {
		case want = <-r.dutyCh:
			err := apply()
			if want.done != nil {
				if err != nil {
					err = fmt.Errorf("election: demote: %w", err)
				}
				want.done <- err
				return
			}
		case <-retryC:
			retry, retryC = nil, nil
			_ = apply()
		case <-r.ctx.Done():
			return
		}
	}
}

func (r *Runner) setServing(epoch uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.Role == RoleProxy && r.state.Epoch == epoch && !r.state.Serving {
		r.state.Serving = true
		r.notifyLocked()
	}
}

// ---- network ----

func (r *Runner) broadcaster() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case b := <-r.bcast:
			if err := r.topic.Publish(r.ctx, b); err != nil && r.ctx.Err() == nil {
				r.log.Debug("election: publish", "err", err)
			}
		}
	}
}

func (r *Runner) readTopic() {
	defer r.wg.Done()
	self := r.h.ID()
	for {
		msg, err := r.sub.Next(r.ctx)
		if err != nil {
			return
		}
		if msg.ReceivedFrom == self || msg.GetFrom() == self {
			continue
		}
		m, err := Decode(msg.Data)
		if err != nil || m.From != msg.GetFrom() {
			continue
		}
		r.deliver(m)
	}
}

func (r *Runner) deliver(m Message) {
	select {
	case r.inbox <- m:
	case <-r.ctx.Done():
	default:
		r.log.Debug("election: inbox full, dropped", "from", m.From, "type", m.Type)
	}
}

func (r *Runner) readReachability() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case ev, ok := <-r.rsub.Out():
			if !ok {
				return
			}
			e, ok := ev.(event.EvtLocalReachabilityChanged)
			if !ok {
				continue
			}
			var reach Reachability
			switch e.Reachability {
			case network.ReachabilityPublic:
				reach = ReachabilityPublic
			case network.ReachabilityPrivate:
				reach = ReachabilityPrivate
			}
			select {
			case r.reachCh <- reach:
			case <-r.ctx.Done():
				return
			}
		}
	}
}

func (r *Runner) handleStream(s network.Stream) {
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(r.o.cfg.HelloInterval))
	b, err := io.ReadAll(io.LimitReader(s, MaxMessageSize+1))
	if err != nil {
		_ = s.Reset()
		return
	}
	m, err := Decode(b)
	why := ""
	switch {
	case err != nil:
		why = decodeReason(err)
	case m.From != s.Conn().RemotePeer():
		why = "wrong_sender"
	case m.Type == MsgAnnounce:
		why = "unexpected"
	default:
		why = r.admit(m.From, m)
	}
	if why != "" {
		r.refused(why)
		_ = s.Reset()
		return
	}
	r.deliver(m)
}

func (r *Runner) sendDirect(ctx context.Context, to peer.ID, b []byte) error {
	s, err := r.h.NewStream(network.WithAllowLimitedConn(ctx, "hiersip-hello"), to, HelloProtocol)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetWriteDeadline(dl)
	}
	if _, err := s.Write(b); err != nil {
		_ = s.Reset()
		return err
	}
	return s.Close()
}
