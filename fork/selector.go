package fork

import (
	"errors"
	"fmt"
	"slices"

	"github.com/emiago/sipgo/sip"
)

// ErrNoBranches: a selector needs at least one branch.
var ErrNoBranches = errors.New("fork: no branches")

// State is a branch's state in the response context.
type State int

// Branch states.
const (
	Waiting    State = iota // not sent yet: its device is being woken (push)
	Calling                 // request sent, no response yet
	Proceeding              // a provisional response arrived
	Completed               // a final response arrived, or the branch failed or was abandoned
)

func (s State) String() string {
	switch s {
	case Waiting:
		return "waiting"
	case Calling:
		return "calling"
	case Proceeding:
		return "proceeding"
	case Completed:
		return "completed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Actions are what the caller must do after an event, in this order: start
// or stop timers, send CANCELs, drop waiting branches, then forward
// responses upstream (the proxy core removes its own Via first) or, when
// Respond is set, answer the server transaction with that status itself.
type Actions struct {
	StartTimerC []int           // (re)start Timer C of these branches (INVITE only)
	StopTimerC  []int           // stop Timer C of these branches
	Cancel      []int           // send CANCEL on these branches (each once)
	Abandon     []int           // drop these Waiting branches: never send their request
	Forward     []*sip.Response // send upstream, in order
	Respond     int             // > 0: answer upstream with this status (no branch response to forward)
	Reason      string          // its reason phrase
}

// Empty reports whether there is nothing to do.
func (a Actions) Empty() bool {
	return len(a.StartTimerC) == 0 && len(a.StopTimerC) == 0 && len(a.Cancel) == 0 &&
		len(a.Abandon) == 0 && len(a.Forward) == 0 && a.Respond == 0
}

type branch struct {
	state         State
	cancelPending bool          // CANCEL due as soon as a provisional arrives (RFC 3261 §9.1)
	cancelSent    bool          // CANCEL sent
	code          int           // final status, 0 until Completed with one
	reason        string        // reason for a status without a response
	res           *sip.Response // final response, nil for a synthetic status
	seq           int           // order of arrival of the final status
}

// Selector is the response context of a forking proxy for one request (RFC
// 3261 §16.7): it decides which responses go upstream and which branches
// are cancelled. It is a pure state machine: events in (Response, Failed,
// TimerC, CancelAll, Send), Actions out; it sends nothing and reads no
// clock. Not safe for concurrent use: the caller serialises a request's
// events (one goroutine per forked request, or a lock).
//
// The rules, for INVITE: a provisional response other than 100 is
// forwarded at once and restarts the branch's Timer C; any 2xx is forwarded
// at once (every 2xx, also a second branch's) and every other pending
// branch is cancelled; a 6xx cancels every other pending branch and no new
// branch starts, the 6xx is forwarded once all branches completed; other
// final responses are kept until every branch has completed, then the best
// is forwarded: a 6xx if any; else the lowest class; among 4xx first 401
// and 407 (carrying every WWW-Authenticate and Proxy-Authenticate of all
// 401/407 responses, §16.7 step 7), then 415, 420, 484, then the lowest
// code with 480, 408 and 487 last (they say least about the callee); a
// selected 503 becomes 500 (§16.7 step 6). Timer C on a branch that has
// had a provisional response cancels it; on one that has not, it counts as
// 408 (§16.8). A transport error counts as 503 (§16.9), a device that did
// not wake as 480. CANCEL goes only to branches that have had a
// provisional response (§9.1); a branch without one is cancelled as soon
// as one arrives. For other methods there is no CANCEL and no Timer C: the
// first 2xx is forwarded and ends the context (later finals are dropped);
// without a 2xx the best final is chosen as for INVITE.
type Selector struct {
	invite    bool
	branches  []branch
	finals    int  // final statuses received so far (orders them)
	finalSent bool // a final response went upstream
	stopping  bool // a 2xx or 6xx arrived, or the caller cancelled: no new requests
}

// NewSelector returns the response context of a request of method forked
// to len(starts) branches, each starting Calling (its request is being
// sent) or Waiting (its device is being woken first; call Send when it
// is). The Actions start Timer C of the Calling branches of an INVITE.
func NewSelector(method sip.RequestMethod, starts ...State) (*Selector, Actions, error) {
	if len(starts) == 0 {
		return nil, Actions{}, ErrNoBranches
	}
	s := &Selector{invite: method == sip.INVITE, branches: make([]branch, len(starts))}
	var a Actions
	for i, st := range starts {
		if st != Calling && st != Waiting {
			return nil, Actions{}, fmt.Errorf("fork: branch %d cannot start %s", i, st)
		}
		s.branches[i].state = st
		if st == Calling && s.invite {
			a.StartTimerC = append(a.StartTimerC, i)
		}
	}
	return s, a, nil
}

// State returns branch b's state.
func (s *Selector) State(b int) State { return s.branches[b].state }

// Done reports whether the context is over: a final response went upstream
// and every branch has completed.
func (s *Selector) Done() bool {
	if !s.finalSent {
		return false
	}
	for _, br := range s.branches {
		if br.state != Completed {
			return false
		}
	}
	return true
}

func (s *Selector) valid(b int) bool { return b >= 0 && b < len(s.branches) }

// Send is called when a Waiting branch's device woke up: it reports whether
// to send the branch's request now. It is false when the branch was
// abandoned meanwhile (a 2xx or 6xx elsewhere, the caller cancelled).
func (s *Selector) Send(b int) (bool, Actions) {
	if !s.valid(b) || s.branches[b].state != Waiting || s.stopping {
		return false, Actions{}
	}
	s.branches[b].state = Calling
	var a Actions
	if s.invite {
		a.StartTimerC = []int{b}
	}
	return true, a
}

// Response handles a response that arrived on branch b.
func (s *Selector) Response(b int, res *sip.Response) Actions {
	if !s.valid(b) || res == nil {
		return Actions{}
	}
	br := &s.branches[b]
	code := res.StatusCode
	var a Actions
	if code < 200 {
		if br.state == Completed || br.state == Waiting {
			return a
		}
		br.state = Proceeding
		if br.cancelPending && !br.cancelSent {
			br.cancelSent = true
			a.Cancel = append(a.Cancel, b)
		}
		if code > 100 {
			if s.invite && !br.cancelSent {
				a.StartTimerC = append(a.StartTimerC, b)
			}
			if !s.finalSent {
				a.Forward = append(a.Forward, res)
			}
		}
		return a
	}
	if code < 300 {
		if s.invite {
			// Every 2xx of an INVITE goes upstream, whatever came before
			// (a late 2xx after a CANCEL, a second callee's answer).
			a.Forward = append(a.Forward, res)
			s.finalSent = true
			if br.state != Completed {
				s.complete(b, code, res, "", &a)
			}
			s.stop(&a)
			return a
		}
		if br.state == Completed {
			return a
		}
		s.complete(b, code, res, "", &a)
		if !s.finalSent {
			s.finalSent = true
			a.Forward = append(a.Forward, res)
			s.stop(&a) // no CANCEL for other methods: waiting branches are dropped
		}
		return a
	}
	if br.state == Completed {
		return a
	}
	s.complete(b, code, res, "", &a)
	if code >= 600 && s.invite {
		s.stop(&a)
	}
	s.maybeFinal(&a)
	return a
}

// Failed completes branch b without a response from its target: status
// 503 for a transport error or an unreachable node (§16.9), 480 for a
// device that did not wake, 408 for a client transaction that timed out.
func (s *Selector) Failed(b int, status int, reason string) Actions {
	if !s.valid(b) || s.branches[b].state == Completed {
		return Actions{}
	}
	var a Actions
	s.complete(b, status, nil, reason, &a)
	s.maybeFinal(&a)
	return a
}

// TimerC handles Timer C firing on branch b of an INVITE (§16.8): a branch
// with a provisional response is cancelled (it completes with the 487 that
// follows, or Failed if none comes), one without counts as 408, a device
// still being woken is abandoned and counts as 480.
func (s *Selector) TimerC(b int) Actions {
	if !s.valid(b) || !s.invite {
		return Actions{}
	}
	br := &s.branches[b]
	var a Actions
	switch br.state {
	case Proceeding:
		if !br.cancelSent {
			br.cancelSent = true
			a.Cancel = append(a.Cancel, b)
		}
	case Calling:
		s.complete(b, 408, nil, "Request Timeout", &a)
		s.maybeFinal(&a)
	case Waiting:
		a.Abandon = append(a.Abandon, b)
		s.complete(b, 480, nil, "Temporarily Unavailable: the device did not wake", &a)
		s.maybeFinal(&a)
	}
	return a
}

// CancelAll handles a CANCEL of the request from upstream (§16.10): every
// pending branch is cancelled; the final response is then chosen from what
// the branches answer (their 487s) as usual.
func (s *Selector) CancelAll() Actions {
	var a Actions
	s.stop(&a)
	s.maybeFinal(&a)
	return a
}

// complete records branch b's final status.
func (s *Selector) complete(b, code int, res *sip.Response, reason string, a *Actions) {
	br := &s.branches[b]
	if s.invite && (br.state == Calling || br.state == Proceeding) {
		a.StopTimerC = append(a.StopTimerC, b)
	}
	s.finals++
	br.state, br.code, br.res, br.reason, br.seq = Completed, code, res, reason, s.finals
}

// stop ends the search: no waiting branch is sent, every pending branch of
// an INVITE is cancelled (at once, or when its first provisional arrives).
func (s *Selector) stop(a *Actions) {
	s.stopping = true
	for i := range s.branches {
		br := &s.branches[i]
		switch br.state {
		case Waiting:
			a.Abandon = append(a.Abandon, i)
			s.complete(i, 487, nil, "Request Terminated", a)
		case Proceeding:
			if s.invite && !br.cancelSent {
				br.cancelSent = true
				a.Cancel = append(a.Cancel, i)
			}
		case Calling:
			if s.invite {
				br.cancelPending = true
			}
		}
	}
}

// maybeFinal sends the best final response once every branch completed.
func (s *Selector) maybeFinal(a *Actions) {
	if s.finalSent {
		return
	}
	for _, br := range s.branches {
		if br.state != Completed {
			return
		}
	}
	s.finalSent = true
	best := s.best()
	if best < 0 {
		a.Respond, a.Reason = 408, "Request Timeout"
		return
	}
	br := s.branches[best]
	if br.res == nil {
		a.Respond, a.Reason = br.code, br.reason
		if br.code == 503 {
			a.Respond, a.Reason = 500, "Server Internal Error"
		}
		return
	}
	res := br.res
	switch {
	case br.code == 503:
		res = res.Clone()
		res.StatusCode, res.Reason = 500, "Server Internal Error"
	case br.code == 401 || br.code == 407:
		res = s.withChallenges(best)
	}
	a.Forward = append(a.Forward, res)
}

// rank orders final statuses within their class: lower is better.
func rank(code int) int {
	switch code {
	case 401:
		return 1
	case 407:
		return 2
	case 415:
		return 3
	case 420:
		return 4
	case 484:
		return 5
	case 480:
		return 1000
	case 408:
		return 1001
	case 487:
		return 1002
	}
	return 100 + code%100
}

// best returns the branch whose final status goes upstream, -1 if none
// has one.
func (s *Selector) best() int {
	best := -1
	better := func(i, j int) bool { // is branch i's status better than j's?
		ci, cj := s.branches[i].code, s.branches[j].code
		gi, gj := ci >= 600, cj >= 600
		if gi != gj {
			return gi
		}
		if gi { // the first 6xx ended the search
			return s.branches[i].seq < s.branches[j].seq
		}
		if ci/100 != cj/100 {
			return ci/100 < cj/100
		}
		if ri, rj := rank(ci), rank(cj); ri != rj {
			return ri < rj
		}
		if ri, rj := s.branches[i].res != nil, s.branches[j].res != nil; ri != rj {
			return ri // a callee's own answer over one made up here
		}
		return s.branches[i].seq < s.branches[j].seq
	}
	for i, br := range s.branches {
		if br.code < 300 {
			continue
		}
		if best < 0 || better(i, best) {
			best = i
		}
	}
	return best
}

// withChallenges returns a copy of branch b's 401/407 with the challenges
// of every other 401/407 added (§16.7 step 7).
func (s *Selector) withChallenges(b int) *sip.Response {
	res := s.branches[b].res.Clone()
	have := map[string]bool{}
	for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
		for _, h := range res.GetHeaders(name) {
			have[name+"\x00"+h.Value()] = true
		}
	}
	for i, br := range s.branches {
		if i == b || br.res == nil || (br.code != 401 && br.code != 407) {
			continue
		}
		for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
			for _, h := range br.res.GetHeaders(name) {
				if k := name + "\x00" + h.Value(); !have[k] {
					have[k] = true
					res.AppendHeader(sip.NewHeader(name, h.Value()))
				}
			}
		}
	}
	return res
}

// Pending returns the branches not yet completed.
func (s *Selector) Pending() []int {
	var out []int
	for i, br := range s.branches {
		if br.state != Completed {
			out = append(out, i)
		}
	}
	return slices.Clip(out)
}
