package sipbridge

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/fork"
	"github.com/hiersip/hiersip/presence"
)

// Presence (issue 19): PUBLISH and SUBSCRIBE for an AOR of the domain go to the user's
// presence home — the node of the AOR's device set with the lowest peer ID (fork.Home) —
// whose presence agent (package presence) answers them; a node that serves no device of
// the user and finds no home answers itself (closed presence). A SUBSCRIBE is
// record-routed by the watcher's node like an INVITE, so the agent's NOTIFYs follow the
// dialog's route set back through that node (over the overlay, across NATs and domains);
// the agent's Contact is the presentity's AOR, so a refresh is routed to the home again.
// The watcher is the From header: checked with digest by the watcher's node for its own UAs
// (admission.go), asserted by that node otherwise; reg and message-summary, which only the
// user may watch (they show contacts and waiting messages), are served to a UA by its own
// node (the one that checked its digest, holds its registrations and delivers its
// waiting messages: mailbox.go), and refused to a request another node forwards.
// Registrations at the home are the presence of a user who publishes nothing, and the
// reg package. The bridge keeps one dialog per subscription (bounded by the agent's
// limits) and sends each NOTIFY in a client transaction of its own.

// presenceState is the bridge's presence agent and its subscriptions' dialogs.
type presenceState struct {
	mu     sync.Mutex
	agent  *presence.Agent
	dlgs   map[presence.SubID]*subDialog
	regs   regPresence   // this node's devices published at their users' homes (regpresence.go)
	wake   chan struct{} // the next deadline may have moved
	notify sync.Mutex    // serialises NOTIFY sends: a subscription's NOTIFYs go in order
}

// subDialog is the notifier's side of a subscription's dialog.
type subDialog struct {
	callID    string
	localTag  string
	remoteTag string
	local     sip.Uri // the presentity (From of NOTIFYs)
	remote    sip.Uri // the watcher (To of NOTIFYs)
	target    sip.Uri // the watcher's Contact
	routes    []sip.Uri
	cseq      uint32
}

func newPresence() (*presenceState, error) {
	a, err := presence.NewAgent()
	if err != nil {
		return nil, err
	}
	return &presenceState{agent: a, dlgs: map[presence.SubID]*subDialog{}, wake: make(chan struct{}, 1)}, nil
}

// presenceRequest reports whether route should hand req to the presence agent's routing.
func (b *Bridge) presenceRequest(req *sip.Request) bool {
	return b.pres != nil && (req.Method == sip.SUBSCRIBE || req.Method == sip.PUBLISH)
}

// servePresence routes a PUBLISH or SUBSCRIBE for an AOR of the domain: to the presence
// home, or to this node's agent.
func (b *Bridge) servePresence(r *relayCall, d decision, reply func(int, string, ...sip.Header)) {
	aor := *d.presence
	now := b.now()
	home := b.self
	var set *domains.DeviceSet
	if event, _ := eventOf(r.req); r.from == "" && r.req.Method == sip.SUBSCRIBE && ownEvent(event) {
		// The user's own packages are served by the node of the user's device: it
		// holds the device's registrations and delivers its waiting messages.
		if event == presence.EventMessageSummary && !hasTag(r.req.To()) && fromAOR(r.req) == aor.String() {
			b.deliverWaiting(aor) // mailbox.go: read the count afresh
		}
	} else if forkedBy(r.req, r.from) == "" {
		key := aor.String()
		var ok bool
		if set, ok = b.devs.get(key, now); !ok {
			ctx, cancel := context.WithTimeout(b.ctx, b.cfg.locTimeout)
			var err error
			set, err = b.loc.(DeviceLocator).LookupDevices(ctx, aor)
			cancel()
			if err == nil {
				b.devs.put(key, set, now)
			}
		}
		if h, ok := fork.Home(set, now); ok {
			home = h
		}
	}
	if home == b.self {
		b.presenceLocal(r, aor)
		return
	}
	bd := decision{pop: d.pop, hop: hop{peer: home}}
	if e := set.Entry(home); e != nil {
		bd.hop.addrs = e.Addrs
	}
	f, ct, code, reason := b.sendBranch(r, bd, true)
	if code != 0 {
		reply(code, reason)
		return
	}
	if !b.startRelay(r, f, ct) { // fork.go
		reply(503, "Service Unavailable: node shutting down")
	}
}

// presenceLocal answers a PUBLISH or SUBSCRIBE with this node's agent.
func (b *Bridge) presenceLocal(r *relayCall, aor domains.AOR) {
	req := r.req
	now := b.now()
	watcher := fromAOR(req)
	event, eventID := eventOf(req)
	if r.from != "" && ownEvent(event) {
		// reg and message-summary are for the user alone, and only a local UA's From was
		// checked here (digest): another node could name anyone. The user's own node
		// answers them (servePresence).
		watcher = ""
	}
	expires := -1
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			expires = n
		}
	}
	var res presence.Result
	var notes []presence.Notify
	var localTag string
	ps := b.pres
	ps.mu.Lock()
	switch req.Method {
	case sip.PUBLISH:
		ct := ""
		if h := req.ContentType(); h != nil {
			ct = h.Value()
		}
		ifMatch := ""
		if h := req.GetHeader("SIP-If-Match"); h != nil {
			ifMatch = strings.TrimSpace(h.Value())
		}
		res, notes = ps.agent.Publish(now, presence.PublishRequest{Presentity: aor.String(), Publisher: watcher,
			Event: event, IfMatch: ifMatch, Expires: expires, ContentType: ct, Body: req.Body()})
	case sip.SUBSCRIBE:
		inDialog := hasTag(req.To())
		if inDialog {
			localTag, _ = req.To().Params.Get("tag")
		} else {
			localTag = sip.GenerateTagN(16)
		}
		remoteTag, _ := req.From().Params.Get("tag")
		id := presence.SubID{CallID: req.CallID().Value(), RemoteTag: remoteTag, LocalTag: localTag, Event: event, EventID: eventID}
		var accept []string
		for _, h := range req.GetHeaders("Accept") {
			accept = append(accept, h.Value())
		}
		res, notes = ps.agent.Subscribe(now, presence.SubscribeRequest{ID: id, InDialog: inDialog, Watcher: watcher,
			Presentity: aor.String(), Accept: accept, Expires: expires})
		if res.Status < 300 && ps.dlgs[id] == nil && len(notes) > 0 {
			ps.dlgs[id] = b.subDialogOf(req, aor, localTag)
		}
	}
	ps.mu.Unlock()
	b.presenceWake()

	out := b.newResponse(req, res.Status, res.Reason)
	if req.Method == sip.SUBSCRIBE && res.Status < 300 {
		if to := out.To(); to != nil && !hasTag(req.To()) {
			// The dialog's tag, the one the NOTIFYs carry (newResponse made one of its
			// own: a phone answers a NOTIFY of another tag 481, as baresip does).
			to.Params.Add("tag", localTag)
		}
		for _, h := range req.GetHeaders("Record-Route") {
			out.AppendHeader(h)
		}
		out.AppendHeader(&sip.ContactHeader{Address: aor.URI()})
	}
	if res.Status < 300 {
		out.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(res.Expires)))
	}
	if res.ETag != "" {
		out.AppendHeader(sip.NewHeader("SIP-ETag", res.ETag))
	}
	if res.MinExpires > 0 {
		out.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(res.MinExpires)))
	}
	if res.Accept != "" {
		out.AppendHeader(sip.NewHeader("Accept", res.Accept))
	}
	if res.AllowEvent != "" {
		out.AppendHeader(sip.NewHeader("Allow-Events", res.AllowEvent))
	}
	b.observeCall(req, res.Status)
	if err := r.st.Respond(out); err != nil {
		b.log.Debug("respond failed", "err", err)
	}
	b.sendNotifies(notes)
}

// fromAOR returns the AOR of req's From header ("" when it has none).
func fromAOR(req *sip.Request) string {
	if f := req.From(); f != nil {
		if a, err := domains.AORFromURI(&f.Address); err == nil {
			return a.String()
		}
	}
	return ""
}

// ownEvent reports whether event is a package only the user may watch (reg and
// message-summary show contacts and waiting messages).
func ownEvent(event string) bool {
	return event == presence.EventReg || event == presence.EventMessageSummary
}

// presenceWaiting tells the agent that n messages wait for aor (message-summary; n is
// bounded by the mailbox: domains.MailSlots × domains.MaxMailPerQueue).
func (b *Bridge) presenceWaiting(aor domains.AOR, n int) {
	if b.pres == nil {
		return
	}
	b.pres.mu.Lock()
	notes := b.pres.agent.SetWaiting(b.now(), aor.String(), uint32(max(n, 0)), 0)
	b.pres.mu.Unlock()
	b.presenceWake()
	b.sendNotifies(notes)
}

// eventOf returns the package and id parameter of req's Event header.
func eventOf(req *sip.Request) (event, id string) {
	h := req.GetHeader("Event")
	if h == nil {
		h = req.GetHeader("o")
	}
	if h == nil {
		return "", ""
	}
	parts := strings.Split(h.Value(), ";")
	event = strings.ToLower(strings.TrimSpace(parts[0]))
	for _, p := range parts[1:] {
		if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "id") {
			id = v
		}
	}
	return event, id
}

// subDialogOf is the notifier's dialog of a new subscription req.
func (b *Bridge) subDialogOf(req *sip.Request, aor domains.AOR, localTag string) *subDialog {
	remoteTag, _ := req.From().Params.Get("tag")
	d := &subDialog{callID: req.CallID().Value(), localTag: localTag, remoteTag: remoteTag, local: aor.URI(),
		remote: *req.From().Address.Clone(), target: *req.From().Address.Clone()}
	if c := req.Contact(); c != nil {
		d.target = *c.Address.Clone()
	}
	for _, h := range req.GetHeaders("Record-Route") {
		// The bridge leaves Record-Route unparsed: one header may hold several entries.
		for _, v := range strings.Split(h.Value(), ",") {
			i, j := strings.IndexByte(v, '<'), strings.IndexByte(v, '>')
			if i < 0 || j < i {
				continue
			}
			var u sip.Uri
			if err := sip.ParseUri(v[i+1:j], &u); err == nil {
				d.routes = append(d.routes, u)
			}
		}
	}
	return d
}

// presenceWake tells the ticker that the agent's next deadline may have moved.
func (b *Bridge) presenceWake() {
	select {
	case b.pres.wake <- struct{}{}:
	default:
	}
}

// runPresence calls the agent's Tick at its deadlines until the bridge closes.
func (b *Bridge) runPresence() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		b.pres.mu.Lock()
		next := b.pres.agent.NextDeadline()
		b.pres.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		t.Reset(wait)
		select {
		case <-b.ctx.Done():
			return
		case <-b.pres.wake:
			continue
		case <-t.C:
		}
		b.pres.mu.Lock()
		notes := b.pres.agent.Tick(b.now())
		b.pres.mu.Unlock()
		b.sendNotifies(notes)
	}
}

// presenceRegistration tells the agent aor's contacts at this node changed.
func (b *Bridge) presenceRegistration(aor domains.AOR) {
	if b.pres == nil {
		return
	}
	now := b.now()
	var cs []presence.RegisteredContact
	b.reg.mu.Lock()
	if e := b.reg.aors[aor.String()]; e != nil {
		for _, c := range e.contacts {
			if c.expires.After(now) {
				rc := presence.RegisteredContact{ID: c.key, URI: c.uri.String(), Instance: c.instance, RegID: c.regID,
					CallID: c.callID, CSeq: c.cseq, Since: c.since, Expires: c.expires, State: "active", Event: "registered"}
				if c.instance != "" {
					rc.PubGRUU = gruuOf(aor, c.instance)
				}
				cs = append(cs, rc)
			}
		}
	}
	b.reg.mu.Unlock()
	b.pres.mu.Lock()
	notes := b.pres.agent.SetRegistration(now, aor.String(), cs)
	b.pres.mu.Unlock()
	b.presenceWake()
	b.sendNotifies(notes)
	b.refreshRegistrations(aor) // regpresence.go
}

// sendNotifies sends the agent's NOTIFYs, in order, in the background.
func (b *Bridge) sendNotifies(notes []presence.Notify) {
	if len(notes) == 0 {
		return
	}
	b.spawn(func() {
		b.pres.notify.Lock()
		defer b.pres.notify.Unlock()
		for _, n := range notes {
			b.sendNotify(n)
		}
	})
}

// sendNotify sends one NOTIFY in its subscription's dialog and tells the agent how it went.
func (b *Bridge) sendNotify(n presence.Notify) {
	ps := b.pres
	ps.mu.Lock()
	d := ps.dlgs[n.Sub]
	if d == nil {
		ps.mu.Unlock()
		return
	}
	d.cseq++
	cseq := d.cseq
	terminated := strings.HasPrefix(n.State, "terminated")
	if terminated {
		delete(ps.dlgs, n.Sub)
	}
	ps.mu.Unlock()

	req := sip.NewRequest(sip.NOTIFY, *d.target.Clone())
	for _, u := range d.routes {
		req.AppendHeader(&sip.RouteHeader{Address: *u.Clone()})
	}
	from := &sip.FromHeader{Address: d.local, Params: sip.NewParams()}
	from.Params.Add("tag", d.localTag)
	to := &sip.ToHeader{Address: d.remote, Params: sip.NewParams()}
	to.Params.Add("tag", d.remoteTag)
	req.AppendHeader(from)
	req.AppendHeader(to)
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.NOTIFY})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	ev := n.Sub.Event
	if n.Sub.EventID != "" {
		ev += ";id=" + n.Sub.EventID
	}
	req.AppendHeader(sip.NewHeader("Event", ev))
	req.AppendHeader(sip.NewHeader("Subscription-State", n.State))
	req.AppendHeader(&sip.ContactHeader{Address: d.local})
	if n.ContentType != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", n.ContentType))
	}
	req.SetBody(n.Body)

	status := 0
	dec := b.route(req, "", b.now())
	if !dec.answer() && !dec.hop.self && dec.fork == nil && dec.presence == nil && dec.lookup == nil {
		f := b.forward(req, dec, "")
		if p, err := b.pathTo(f.hop); err == nil {
			if ct, err := b.txl.request(p, f.fwd); err == nil {
				status = waitFinal(b.ctx, ct)
				ct.Terminate()
			}
		}
	}
	if status == 0 {
		status = 408
	}
	ps.mu.Lock()
	ps.agent.NotifyResult(n.Sub, status)
	if status >= 300 && status != 401 && status != 407 {
		delete(ps.dlgs, n.Sub)
	}
	ps.mu.Unlock()
}

// waitFinal waits for the final status of a client transaction (0: none).
func waitFinal(ctx context.Context, ct *clientTx) int {
	if res := waitFinalResponse(ctx, ct); res != nil {
		return res.StatusCode
	}
	return 0
}

// waitFinalResponse waits for the final response of a client transaction (nil: none).
func waitFinalResponse(ctx context.Context, ct *clientTx) *sip.Response {
	for {
		select {
		case res := <-ct.Responses():
			if res.StatusCode >= 200 {
				return res
			}
		case <-ct.Done():
			select {
			case res := <-ct.Responses():
				if res.StatusCode >= 200 {
					return res
				}
			default:
			}
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
