package sipbridge

import (
	"container/list"
	"slices"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The calls the node is in, for people (Bridge.Calls, the node's /status): the INVITE
// dialogs it relays. An initial INVITE adds its call when the node forwards it (forward.go);
// an 18x keeps it early, a 2xx confirms it (core.go's relay, fork.go); a final failure —
// rejection, CANCEL (487), timeout (408), an unreachable hop — or a BYE whose tags match the
// dialog removes it. A node that does not record-route a call (an overlay proxy between the
// end nodes) sees none of its in-dialog requests: it lists the call only until the INVITE's
// final answer.
//
// What an attacker can do with it: the table is what the node relays anyway; a flood of
// INVITEs adds at most one entry per proxied INVITE transaction, itself bounded
// (WithLimits, WithMaxTransactionsPerPeer), and the table holds at most callsMax entries:
// beyond, the confirmed call idle longest is forgotten, and when none is confirmed the new
// call is not listed (the call itself goes on). A BYE removes an entry only with the
// dialog's Call-ID and both its tags (the From tag alone while early), which only a party
// of the call, or someone on its path, sees. A confirmed call whose BYE never passes the
// node (a phone that vanished) is forgotten after callsIdle without an in-dialog request.

// Call states.
const (
	CallEarly     = "early"     // the INVITE was forwarded; no 2xx yet
	CallConfirmed = "confirmed" // a 2xx went upstream
)

// Call directions, from the node's side.
const (
	CallOut     = "out"     // from a phone of this node to another node (or an ordinary SIP server)
	CallIn      = "in"      // from another node (or an ordinary SIP server) to a phone of this node
	CallLocal   = "local"   // between two phones of this node
	CallThrough = "through" // between two other nodes: the node proxies it
)

// Call is a call the node is in (a snapshot: see Bridge.Calls).
type Call struct {
	CallID string
	// From and To are the AORs of the From and To headers (URIs without parameters).
	From, To  string
	State     string // CallEarly or CallConfirmed
	Direction string // CallOut, CallIn, CallLocal or CallThrough
	Started   time.Time
	Confirmed time.Time // zero while early
	// Upstream is where the INVITE came from: a peer ID, "phone <address>", or
	// "server <address>" (an ordinary SIP server at the public listener).
	Upstream string
	// Downstream are where the node sent it: peer IDs, "phone <contact URI>" (several
	// when it forked to the callee's devices), or "server <URI>" (outside the overlay).
	Downstream []string
	// Media: the node anchors the call's media now (media.go).
	Media bool
}

const (
	// callsMax bounds the table: as many calls as UA transactions the default limits admit.
	callsMax = 16384
	// callsIdle is how long a confirmed call without an in-dialog request through the node
	// stays listed (re-INVITEs and UPDATEs of session timers refresh it).
	callsIdle = 24 * time.Hour
	// callsDownstreamMax bounds the targets noted per call.
	callsDownstreamMax = 8
)

// callEntry is one call of the table.
type callEntry struct {
	c       Call
	fromTag string
	toTag   string // the 2xx's To tag (confirmed)
	rr      bool   // the node record-routed the INVITE: it sees the dialog's requests
	last    time.Time
	elem    *list.Element // in callTable.confirmed while confirmed
}

// callTable is the bridge's table of calls. Its zero value is ready.
type callTable struct {
	mu        sync.Mutex
	calls     map[string]*callEntry
	confirmed list.List // *callEntry, least recently active first
	max       int       // callsMax when 0 (tests set it)
}

func (t *callTable) limit() int {
	if t.max > 0 {
		return t.max
	}
	return callsMax
}

// initialInvite reports whether req creates a dialog the table tracks.
func initialInvite(req *sip.Request) bool {
	return req.IsInvite() && !hasTag(req.To()) && req.CallID() != nil && req.From() != nil
}

// callForwarded notes f, a request the node is forwarding: an initial INVITE adds its call
// (or a target to it), an in-dialog request refreshes its call.
func (b *Bridge) callForwarded(f *forwarding) {
	req := f.req
	if req.CallID() == nil {
		return
	}
	t, now := &b.calls, b.now()
	if !initialInvite(req) {
		if req.Method != sip.BYE && hasTag(req.To()) {
			t.touch(req.CallID().Value(), now)
		}
		return
	}
	down := ""
	switch {
	case f.hop.peer != "":
		down = f.hop.peer.String()
	case f.hop.ext != nil && f.hop.uri != nil:
		down = "server " + f.hop.uri.String()
	case f.hop.uri != nil:
		down = "phone " + f.hop.uri.String()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	id := req.CallID().Value()
	e := t.calls[id]
	if e == nil {
		if !t.roomLocked(now) {
			return
		}
		fromTag, _ := req.From().Params.Get("tag")
		up := "phone " + req.Source()
		switch {
		case f.from != "":
			up = f.from.String()
		case b.isPublic(req):
			up = "server " + req.Source()
		}
		e = &callEntry{c: Call{
			CallID: id, From: aorOf(&req.From().Address), State: CallEarly,
			Direction: b.callDirection(f), Started: now, Upstream: up,
		}, fromTag: fromTag, last: now}
		if to := req.To(); to != nil {
			e.c.To = aorOf(&to.Address)
		}
		if t.calls == nil {
			t.calls = map[string]*callEntry{}
		}
		t.calls[id] = e
	} else if d := b.callDirection(f); d != e.c.Direction && (e.c.Direction == CallLocal || d == CallLocal) {
		e.c.Direction = CallLocal // forked to a phone here and to another node
	}
	e.rr = e.rr || recordRoutes(req, f.hop, f.from)
	if down != "" && !slices.Contains(e.c.Downstream, down) && len(e.c.Downstream) < callsDownstreamMax {
		e.c.Downstream = append(e.c.Downstream, down)
	}
}

// callDirection is the direction of the call f forwards: a phone of this node is one that
// sent the request to a UA-facing listener, or that a hop without a peer or a server outside
// the overlay names; the rest are other nodes and ordinary SIP servers.
func (b *Bridge) callDirection(f *forwarding) string {
	fromPhone := f.from == "" && !b.isPublic(f.req) // public.go
	toPhone := f.hop.peer == "" && f.hop.ext == nil && f.hop.uri != nil
	switch {
	case fromPhone && toPhone:
		return CallLocal
	case fromPhone:
		return CallOut
	case toPhone:
		return CallIn
	case f.from == "": // from an ordinary SIP server into the overlay
		return CallIn
	case f.hop.ext != nil: // from a member, out of the overlay
		return CallOut
	}
	return CallThrough
}

// roomLocked makes room for a new call: it forgets confirmed calls idle longer than
// callsIdle, and the one idle longest when the table is full; false when it is full of
// early calls.
func (t *callTable) roomLocked(now time.Time) bool {
	for e := t.confirmed.Front(); e != nil; {
		ce := e.Value.(*callEntry)
		if now.Sub(ce.last) < callsIdle && len(t.calls) < t.limit() {
			break
		}
		next := e.Next()
		t.removeLocked(ce)
		e = next
	}
	return len(t.calls) < t.limit()
}

func (t *callTable) removeLocked(e *callEntry) {
	if e.elem != nil {
		t.confirmed.Remove(e.elem)
		e.elem = nil
	}
	if t.calls[e.c.CallID] == e {
		delete(t.calls, e.c.CallID)
	}
}

// touch notes an in-dialog request of a confirmed call.
func (t *callTable) touch(id string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.calls[id]; e != nil && e.elem != nil {
		e.last = now
		t.confirmed.MoveToBack(e.elem)
	}
}

// callResponse notes res, a response to req the node relays upstream: a 2xx confirms the
// call (or ends the node's part in it when it did not record-route).
func (b *Bridge) callResponse(req *sip.Request, res *sip.Response) {
	if !res.IsSuccess() || !initialInvite(req) {
		return
	}
	t, now := &b.calls, b.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.calls[req.CallID().Value()]
	if e == nil || e.elem != nil {
		return // not tracked, or confirmed by an earlier 2xx (a fork's second answer)
	}
	if !e.rr {
		t.removeLocked(e)
		return
	}
	e.c.State, e.c.Confirmed, e.last = CallConfirmed, now, now
	if to := res.To(); to != nil {
		e.toTag, _ = to.Params.Get("tag")
	}
	e.elem = t.confirmed.PushBack(e)
}

// callFinal notes the final answer the node gives req (observeCall): a failure ends the
// call.
func (b *Bridge) callFinal(req *sip.Request, code int) {
	if code < 300 || !initialInvite(req) {
		return
	}
	t := &b.calls
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.calls[req.CallID().Value()]; e != nil && e.elem == nil {
		t.removeLocked(e) // an early call; a confirmed one ends with its BYE
	}
}

// callRequest notes a request the node is to proxy: a BYE of a dialog it lists ends it.
func (b *Bridge) callRequest(req *sip.Request) {
	if req.Method != sip.BYE || req.CallID() == nil || req.From() == nil || req.To() == nil {
		return
	}
	ft, _ := req.From().Params.Get("tag")
	tt, _ := req.To().Params.Get("tag")
	t := &b.calls
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.calls[req.CallID().Value()]
	if e == nil || e.fromTag == "" {
		return
	}
	switch {
	case e.elem != nil && e.toTag != "":
		if (ft == e.fromTag && tt == e.toTag) || (ft == e.toTag && tt == e.fromTag) {
			t.removeLocked(e)
		}
	case ft == e.fromTag || tt == e.fromTag:
		t.removeLocked(e)
	}
}

// Calls returns the calls the node is in, oldest first (a snapshot).
func (b *Bridge) Calls() []Call {
	now := b.now()
	t := &b.calls
	t.mu.Lock()
	for e := t.confirmed.Front(); e != nil; {
		ce := e.Value.(*callEntry)
		if now.Sub(ce.last) < callsIdle {
			break
		}
		next := e.Next()
		t.removeLocked(ce)
		e = next
	}
	out := make([]Call, 0, len(t.calls))
	for _, e := range t.calls {
		c := e.c
		c.Downstream = slices.Clone(c.Downstream)
		out = append(out, c)
	}
	t.mu.Unlock()
	for i := range out {
		if mc, _ := b.med.get(out[i].CallID, false); mc != nil {
			out[i].Media = mc.live()
		}
	}
	slices.SortFunc(out, func(a, b Call) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		if a.CallID < b.CallID {
			return -1
		}
		if a.CallID > b.CallID {
			return 1
		}
		return 0
	})
	return out
}

// aorOf is u without its parameters and headers, as text.
func aorOf(u *sip.Uri) string {
	a := sip.Uri{Scheme: u.Scheme, User: u.User, Host: u.Host, Port: u.Port}
	if a.Scheme == "" {
		a.Scheme = "sip"
	}
	return a.String()
}
