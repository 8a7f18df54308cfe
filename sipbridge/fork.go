package sipbridge

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/fork"
)

// Several devices per AOR (issue 19): a request that starts a dialog or stands alone
// (INVITE, MESSAGE without a To tag) for an AOR of the node's domain is forked
// to every live device of the user, on this node and on every other node of the domain
// that serves one (the AOR's device set, DeviceLocator). The plan is package fork's
// (fork.NewPlan); the response context is fork.Selector (RFC 3261 §16.7): the best final
// response wins, a 2xx CANCELs the other branches, a 6xx ends the search. A branch to
// another node carries Hiersip-Fork: that node forks to its own devices only (no loops,
// no double forks). One target is proxied as before (core.go's relay); several are
// relayed by forkRelay, one goroutine per branch plus one for the context.

// DeviceLocator is a Locator that also knows every node of the domain serving a device of
// an AOR: with it the bridge forks requests to all of a user's devices. The node's locator
// is one.
type DeviceLocator interface {
	Locator
	// LookupDevices returns the AOR's device set, or an error wrapping domains.ErrNotFound.
	LookupDevices(ctx context.Context, aor domains.AOR) (*domains.DeviceSet, error)
}

// headerFork marks a branch one node forked to another serving node of the AOR: the
// receiving node forks it to its own devices only. It never reaches a UA, and a UA's is
// ignored.
const headerFork = "Hiersip-Fork"

// maxInstanceLen bounds a +sip.instance value.
const maxInstanceLen = 256

// forks reports whether req is forked to the devices of its AOR.
func (b *Bridge) forks(req *sip.Request) bool {
	if _, ok := b.loc.(DeviceLocator); !ok || hasTag(req.To()) {
		return false
	}
	switch req.Method {
	case sip.INVITE, sip.MESSAGE:
		return true
	}
	return false
}

// deviceParams reads the RFC 5626 +sip.instance and reg-id of a REGISTER's Contact; ok is
// false when one is malformed.
func deviceParams(ch *sip.ContactHeader) (instance string, regID int, ok bool) {
	if v, has := ch.Params.Get("+sip.instance"); has {
		if instance = validInstance(v); instance == "" {
			return "", 0, false
		}
	}
	if v, has := ch.Params.Get("reg-id"); has {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 1<<16 {
			return "", 0, false
		}
		regID = n
	}
	return instance, regID, true
}

// validInstance returns v ("<urn:…>", quoted or not) as "<urn:…>", "" when it is not one.
func validInstance(v string) string {
	v = strings.Trim(strings.TrimSpace(v), `"`)
	if len(v) < 3 || len(v) > maxInstanceLen || v[0] != '<' || v[len(v)-1] != '>' ||
		!strings.HasPrefix(strings.ToLower(v[1:]), "urn:") || strings.ContainsAny(v[1:len(v)-1], "<>\" \t\r\n;,") {
		return ""
	}
	return v
}

// addGRUU adds the RFC 5627 public GRUU of a device registered with an instance ID to its
// Contact in a 200 to REGISTER: the AOR with gr=<instance>.
func (b *Bridge) addGRUU(ch *sip.ContactHeader, aor domains.AOR, c *contactEntry) {
	if c.instance == "" {
		return
	}
	ch.Params.Add("+sip.instance", `"`+c.instance+`"`)
	ch.Params.Add("pub-gruu", `"`+gruuOf(aor, c.instance)+`"`)
}

// gruuOf is the public GRUU of a device.
func gruuOf(aor domains.AOR, instance string) string {
	u := aor.URI()
	return u.String() + ";gr=" + strings.TrimSuffix(strings.TrimPrefix(instance, "<"), ">")
}

// forkContacts returns the live contacts of aor at this node, for the fork plan.
func (r *registrar) forkContacts(aor domains.AOR, now time.Time) []fork.Contact {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.aors[aor.String()]
	if e == nil {
		return nil
	}
	out := make([]fork.Contact, 0, len(e.contacts))
	for _, c := range e.contacts {
		if c.expires.After(now) {
			out = append(out, fork.Contact{URI: c.uri.String(), Instance: c.instance, RegID: c.regID,
				Since: c.since, Expires: c.expires, Asleep: r.b.asleep(c)})
		}
	}
	return out
}

// contactHop returns the hop of a live contact of aor at this node, by its URI.
func (r *registrar) contactHop(aor domains.AOR, uri string) (hop, bool) {
	r.mu.Lock()
	e := r.aors[aor.String()]
	var c *contactEntry
	if e != nil {
		for _, x := range e.contacts {
			if x.uri.String() == uri {
				c = x
				break
			}
		}
	}
	if c == nil {
		r.mu.Unlock()
		return hop{}, false
	}
	u := c.uri.Clone()
	r.mu.Unlock()
	h := hop{uri: u}
	h.dst, h.dstTransport = r.dest(c)
	return h, true
}

// deviceCache keeps device sets looked up for a short while (the binding cache's TTL), so
// that a burst of calls to one user costs one lookup.
type deviceCache struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]deviceCached
}

type deviceCached struct {
	set *domains.DeviceSet
	at  time.Time
}

const deviceCacheMax = 4096

func (c *deviceCache) get(key string, now time.Time) (*domains.DeviceSet, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || now.Sub(e.at) > c.ttl {
		return nil, false
	}
	return e.set, true
}

func (c *deviceCache) put(key string, set *domains.DeviceSet, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= deviceCacheMax {
		c.m = map[string]deviceCached{}
	}
	c.m[key] = deviceCached{set: set, at: now}
}

func (c *deviceCache) forget(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// forkedBy returns the node that forked req to this node ("" when req is not a branch of
// another node's fork): a peer's request carrying Hiersip-Fork.
func forkedBy(req *sip.Request, from peer.ID) peer.ID {
	if from == "" || !hasHeader(req, headerFork) {
		return ""
	}
	return from
}

// plan decides the targets of a forked request.
func (b *Bridge) plan(req *sip.Request, d decision, from peer.ID) fork.Plan {
	aor := *d.fork
	now := b.now()
	in := fork.Input{AOR: aor, Self: b.self, Local: b.reg.forkContacts(aor, now), GRUU: d.gruu,
		FromPeer: forkedBy(req, from), Now: now}
	if in.FromPeer == "" {
		key := aor.String()
		set, ok := b.devs.get(key, now)
		if !ok {
			ctx, cancel := context.WithTimeout(b.ctx, b.cfg.locTimeout)
			var err error
			set, err = b.loc.(DeviceLocator).LookupDevices(ctx, aor)
			cancel()
			switch {
			case errors.Is(err, domains.ErrNotFound):
				set = nil
				b.devs.put(key, nil, now)
			case err != nil:
				b.log.Warn("device lookup failed", "aor", key, "err", err)
				if len(in.Local) == 0 {
					return fork.Plan{Status: 480, Reason: "Temporarily Unavailable: lookup failed"}
				}
			default:
				b.devs.put(key, set, now)
			}
		}
		in.Devices = set
	}
	return fork.NewPlan(in)
}

// bindingTarget returns the node of aor's live binding as a fork target.
func (b *Bridge) bindingTarget(aor domains.AOR) (fork.Target, bool) {
	key, now := aor.String(), b.now()
	if e, ok := b.binds.get(key, now); ok && e.peer != b.self {
		return fork.Target{Node: peer.AddrInfo{ID: e.peer, Addrs: e.addrs}, Devices: 1}, true
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.locTimeout)
	bind, err := b.loc.Lookup(ctx, aor)
	cancel()
	if err != nil || bind == nil || !bind.Live(now) || len(bind.Contacts) == 0 || bind.Peer == b.self {
		return fork.Target{}, false
	}
	b.binds.put(key, bind, now)
	return fork.Target{Node: peer.AddrInfo{ID: bind.Peer, Addrs: bind.Addrs}, Devices: len(bind.Contacts)}, true
}

// branchDecision turns a target of the plan into a decision for forward.
func (b *Bridge) branchDecision(d decision, t fork.Target) (decision, bool) {
	bd := decision{pop: d.pop, ruri: d.ruri}
	if t.Local() {
		h, ok := b.reg.contactHop(*d.fork, t.Contact)
		if !ok {
			return bd, false
		}
		bd.hop, bd.ruri = h, h.uri.Clone()
		stripPush(bd.ruri) // push.go
		return bd, true
	}
	bd.hop = hop{peer: t.Node.ID, addrs: t.Node.Addrs}
	return bd, true
}

// forkRequest proxies r.req, for which route decided d (d.fork set): to its one target
// as any proxied request, to several in parallel (forkRelay). It answers r.req when there
// is no target or none can be reached.
func (b *Bridge) forkRequest(r *relayCall, d decision, reply func(int, string, ...sip.Header)) {
	p := b.plan(r.req, d, r.from)
	if len(p.Targets) == 0 && p.Status == 404 && forkedBy(r.req, r.from) == "" {
		// No device set (yet: a node stores its entry just after the REGISTER): the
		// binding names the node the user registered at last.
		if t, ok := b.bindingTarget(*d.fork); ok {
			p = fork.Plan{Targets: []fork.Target{t}}
		}
	}
	if len(p.Targets) == 0 {
		if r.req.Method == sip.MESSAGE && b.storeMessage(r.req, r.st, *d.fork, p.Status) { // mailbox.go
			return
		}
		reply(p.Status, p.Reason)
		return
	}
	wake := false
	for _, t := range p.Targets {
		wake = wake || t.Wake
	}
	if len(p.Targets) == 1 && !wake {
		bd, ok := b.branchDecision(d, p.Targets[0])
		if !ok {
			reply(480, "Temporarily Unavailable")
			return
		}
		if !p.Targets[0].Local() && forkedBy(r.req, r.from) == "" {
			bd.hop.aor = d.fork.String() // from a lookup: core.go's relay looks again if the node is gone
		}
		f, ct, code, reason := b.sendBranch(r, bd, mediaBaseAllowed(r.req, r.from))
		if code != 0 {
			if code == 503 {
				reply(code, reason, sip.NewHeader("Retry-After", retryAfter))
				return
			}
			reply(code, reason)
			return
		}
		if !b.startRelay(r, f, ct) {
			reply(503, "Service Unavailable: node shutting down")
		}
		return
	}
	fc := &forkCall{r: r, d: d, aor: d.fork.String(), events: make(chan forkEvent, 4*len(p.Targets)+4), stop: make(chan struct{})}
	starts := make([]fork.State, 0, len(p.Targets))
	var failed []int
	for i, t := range p.Targets {
		br := &forkBranch{target: t}
		fc.branches = append(fc.branches, br)
		if t.Wake {
			starts = append(starts, fork.Waiting) // push.go: sent when the device woke
			continue
		}
		starts = append(starts, fork.Calling)
		bd, ok := b.branchDecision(d, t)
		if !ok {
			failed = append(failed, i)
			continue
		}
		f, ct, code, _ := b.sendBranch(r, bd, i == 0 && mediaBaseAllowed(r.req, r.from))
		if code != 0 {
			failed = append(failed, i)
			br.failCode = code
			continue
		}
		br.f, br.ct, br.rr = f, ct, recordRoutes(r.req, f.hop, r.from)
	}
	sel, acts, err := fork.NewSelector(r.req.Method, starts...)
	if err != nil {
		reply(500, "Server Internal Error")
		return
	}
	fc.sel = sel
	if !b.spawn(func() { b.forkRelay(fc, acts, failed) }) {
		fc.terminate()
		reply(503, "Service Unavailable: node shutting down")
	}
}

// refork proxies r.req again after its one branch found its node gone (core.go's relay,
// which returns then): with a fresh look at the user's devices, in a relay of its own.
func (b *Bridge) refork(r *relayCall, d decision) {
	r2 := &relayCall{req: r.req, st: r.st, from: r.from, canc: r.canc}
	b.forkRequest(r2, d, func(code int, reason string, hdrs ...sip.Header) {
		b.observeCall(r.req, code)
		res := b.newResponse(r.req, code, reason)
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		if err := r.st.Respond(res); err != nil {
			b.log.Debug("respond failed", "err", err)
		}
	})
}

// startRelay makes the branch f, sent as ct, r's and relays its answers (relay); false,
// with ct ended, when the node is shutting down.
func (b *Bridge) startRelay(r *relayCall, f *forwarding, ct *clientTx) bool {
	r.f, r.ct, r.rr = f, ct, recordRoutes(r.req, f.hop, r.from)
	if !b.spawn(func() { b.relay(r) }) {
		r.ct.Terminate()
		return false
	}
	return true
}

// sendBranch forwards r.req as bd says, in a new client transaction; a code other than 0
// is a status instead (the branch failed). base: the branch may anchor its media in the
// call's own leg (media.go), as the first branch of a fork does.
func (b *Bridge) sendBranch(r *relayCall, bd decision, base bool) (*forwarding, *clientTx, int, string) {
	f := b.forward(r.req, bd, r.from)
	for hasHeader(f.fwd, headerFork) {
		removeFirst(f.fwd, headerFork)
	}
	if f.hop.peer != "" {
		v := "1"
		if !base {
			v = "2" // the node names its devices' media legs (media.go)
		}
		f.fwd.AppendHeader(sip.NewHeader(headerFork, v))
	}
	if code, reason := b.mediaBranch(r.req, f.fwd, f.hop, r.from, base); code != 0 { // media.go
		return nil, nil, code, reason
	}
	p, err := b.pathTo(f.hop)
	var ct *clientTx
	if err == nil {
		ct, err = b.txl.request(p, f.fwd)
	}
	if err != nil {
		b.mediaBranchEnd(f.fwd) // media.go
		if f.hop.peer != "" {
			b.log.Debug("node unreachable", "peer", f.hop.peer, "err", err)
			return nil, nil, 480, "Temporarily Unavailable: serving node unreachable"
		}
		b.log.Debug("user agent unreachable", "uri", f.hop.uri.String(), "err", err)
		return nil, nil, 480, "Temporarily Unavailable: user agent unreachable"
	}
	return f, ct, 0, ""
}

// forkCall is a request forked to several targets.
type forkCall struct {
	r        *relayCall
	d        decision
	aor      string
	sel      *fork.Selector
	branches []*forkBranch
	events   chan forkEvent
	stop     chan struct{} // closed when the context ends: branch readers return
}

type forkBranch struct {
	f        *forwarding // nil: the branch could not be sent
	ct       *clientTx
	rr       bool
	failCode int
	timerC   time.Time     // Timer C's deadline (zero: not running)
	last     *sip.Response // the branch's latest response
	target   fork.Target
}

type forkEvent struct {
	b     int
	res   *sip.Response
	done  bool
	woken bool // the branch's device woke (err nil) or did not (push.go)
	err   error
}

func (fc *forkCall) terminate() {
	for _, br := range fc.branches {
		if br.ct != nil {
			br.ct.Terminate()
		}
	}
}

// readBranch passes the responses and the end of branch i's client transaction to the
// context's goroutine.
func (fc *forkCall) readBranch(i int) {
	ct := fc.branches[i].ct
	send := func(ev forkEvent) bool {
		select {
		case fc.events <- ev:
			return true
		case <-fc.stop:
			return false
		}
	}
	for {
		select {
		case res := <-ct.Responses():
			if !send(forkEvent{b: i, res: res}) {
				return
			}
		case <-ct.Done():
			for {
				select {
				case res := <-ct.Responses():
					if !send(forkEvent{b: i, res: res}) {
						return
					}
					continue
				default:
				}
				break
			}
			send(forkEvent{b: i, done: true, err: ct.Err()})
			return
		case <-fc.stop:
			return
		}
	}
}

// forkRelay runs the response context of fc until the final response went upstream and
// every branch completed (RFC 3261 §16.7, §16.8, §16.10).
func (b *Bridge) forkRelay(fc *forkCall, first fork.Actions, failed []int) {
	r := fc.r
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	defer fc.terminate()
	defer close(fc.stop)
	wctx, wcancel := context.WithCancel(b.ctx)
	defer wcancel()
	for i, br := range fc.branches {
		switch {
		case br.target.Wake:
			if !b.spawn(func() { b.wakeTarget(wctx, fc, i, *fc.d.fork, br.target) }) { // push.go
				failed = append(failed, i)
			}
		case br.ct != nil && !b.spawn(func() { fc.readBranch(i) }):
			failed = append(failed, i)
		}
	}
	finalSent := false
	final := func(code int, reason string) {
		if finalSent {
			return
		}
		finalSent = true
		b.observeCall(r.req, code)
		if err := r.st.Respond(b.newResponse(r.req, code, reason)); err != nil {
			b.log.Debug("respond failed", "err", err)
		}
	}
	var apply func(a fork.Actions, from int)
	apply = func(a fork.Actions, from int) {
		now := b.now()
		for _, i := range a.StartTimerC {
			fc.branches[i].timerC = now.Add(inviteTimeout)
		}
		for _, i := range a.StopTimerC {
			fc.branches[i].timerC = time.Time{}
		}
		for _, i := range a.Cancel {
			if br := fc.branches[i]; br.f != nil {
				b.cancelBranch(br.f)
			}
		}
		for _, res := range a.Forward {
			i := from
			for j, br := range fc.branches {
				if br.last == res {
					i = j
				}
			}
			b.forkUp(fc, i, res)
			if res.StatusCode >= 200 && !finalSent {
				finalSent = true
				b.observeCall(r.req, res.StatusCode)
			}
		}
		if a.Respond > 0 {
			final(a.Respond, a.Reason)
		}
	}
	apply(first, -1)
	for _, i := range failed {
		code := fc.branches[i].failCode
		if code == 0 {
			code = 480
		}
		apply(fc.sel.Failed(i, code, "Temporarily Unavailable"), i)
	}
	guardD := nonInviteTimeout + cancelGrace
	if r.req.IsInvite() {
		guardD = 2*inviteTimeout + cancelGrace
	}
	guard := time.NewTimer(guardD)
	defer guard.Stop()
	timerC := time.NewTimer(time.Hour)
	defer timerC.Stop()
	cancelCh := (<-chan struct{})(r.canc)
	for !fc.sel.Done() {
		next := time.Time{}
		for _, br := range fc.branches {
			if !br.timerC.IsZero() && (next.IsZero() || br.timerC.Before(next)) {
				next = br.timerC
			}
		}
		if !next.IsZero() {
			timerC.Reset(max(time.Until(next), 0))
		} else {
			timerC.Stop()
		}
		select {
		case ev := <-fc.events:
			br := fc.branches[ev.b]
			if ev.woken {
				if ev.err != nil {
					apply(fc.sel.Failed(ev.b, 480, "Temporarily Unavailable: the device did not wake"), ev.b)
					continue
				}
				ok, acts := fc.sel.Send(ev.b)
				apply(acts, ev.b)
				if ok {
					b.sendWoken(fc, ev.b, apply)
				}
				continue
			}
			if ev.res != nil {
				if ev.res.StatusCode == 100 {
					continue
				}
				br.last = ev.res
				if ev.res.StatusCode >= 300 && br.f != nil {
					b.mediaBranchEnd(br.f.fwd) // media.go: a losing or failed device's session
				}
				apply(fc.sel.Response(ev.b, ev.res), ev.b)
				continue
			}
			err := ev.err
			if err != nil && br.f != nil {
				b.mediaBranchEnd(br.f.fwd) // media.go
			}
			if br.f != nil && br.f.hop.peer != "" && errors.Is(err, ErrLinkDown) {
				b.devs.forget(fc.aor)
			}
			switch {
			case errors.Is(err, ErrLinkDown):
				apply(fc.sel.Failed(ev.b, 480, "Temporarily Unavailable: serving node unreachable"), ev.b)
			case errors.Is(err, ErrClosed):
				apply(fc.sel.Failed(ev.b, 503, "Service Unavailable: node shutting down"), ev.b)
			case errors.Is(err, sip.ErrTransactionTimeout):
				apply(fc.sel.Failed(ev.b, 408, "Request Timeout"), ev.b)
			default:
				apply(fc.sel.Failed(ev.b, 480, "Temporarily Unavailable"), ev.b)
			}
		case <-cancelCh:
			cancelCh = nil
			apply(fc.sel.CancelAll(), -1)
		case <-timerC.C:
			now := b.now()
			for i, br := range fc.branches {
				if !br.timerC.IsZero() && !now.Before(br.timerC) {
					br.timerC = time.Time{}
					apply(fc.sel.TimerC(i), i)
				}
			}
		case <-guard.C:
			apply(fc.sel.CancelAll(), -1)
			final(408, "Request Timeout")
			return
		case <-b.ctx.Done():
			final(503, "Service Unavailable: node shutting down")
			return
		}
	}
}

// sendWoken sends branch i, whose device woke, to the contact it registered last.
func (b *Bridge) sendWoken(fc *forkCall, i int, apply func(fork.Actions, int)) {
	br := fc.branches[i]
	h, ok := b.reg.wokenHop(*fc.d.fork, br.target.Instance, br.target.Contact)
	if !ok {
		apply(fc.sel.Failed(i, 480, "Temporarily Unavailable"), i)
		return
	}
	bd := decision{pop: fc.d.pop, hop: h, ruri: h.uri.Clone()}
	stripPush(bd.ruri)
	f, ct, code, reason := b.sendBranch(fc.r, bd, false)
	if code != 0 {
		apply(fc.sel.Failed(i, code, reason), i)
		return
	}
	br.f, br.ct, br.rr = f, ct, recordRoutes(fc.r.req, f.hop, fc.r.from)
	if !b.spawn(func() { fc.readBranch(i) }) {
		apply(fc.sel.Failed(i, 503, "Service Unavailable: node shutting down"), i)
	}
}

// forkUp passes res, a response of branch i, upstream.
func (b *Bridge) forkUp(fc *forkCall, i int, res *sip.Response) {
	r := fc.r
	var br *forkBranch
	if i >= 0 && i < len(fc.branches) && fc.branches[i].f != nil {
		br = fc.branches[i]
	}
	fromUA, toPeer := br != nil && br.f.hop.uri != nil, r.from != ""
	out := upResponse(res)
	if fromUA && res.StatusCode < 300 {
		b.natResponse(res, out) // nat.go
	}
	b.nodeHeaders(out, br != nil && br.rr, toPeer)
	b.mediaResponse(r.req, res, out, fromUA, toPeer) // media.go
	b.callResponse(r.req, res)                       // calls.go
	if err := r.st.Respond(out); err != nil {
		b.log.Debug("relaying response failed", "status", res.StatusCode, "err", err)
		if r.req.IsInvite() && res.IsSuccess() && br != nil {
			b.endCalleeLeg(r.req, br.f.hop, res) // orphans.go: a second answer that raced the first
		}
	}
}

// cancelBranch sends the CANCEL of a forwarded INVITE along its hop's path.
func (b *Bridge) cancelBranch(f *forwarding) {
	if !f.req.IsInvite() {
		return
	}
	c := cancelFor(f.fwd)
	p, err := b.pathTo(f.hop)
	if err == nil {
		_, err = b.txl.request(p, c)
	}
	if err != nil {
		b.log.Debug("cancel failed", "err", err)
	}
}
