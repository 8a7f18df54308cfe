package fork

import (
	"errors"
	"slices"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func res(code int, hdrs ...string) *sip.Response {
	r := sip.NewResponse(code, "reason")
	for i := 0; i+1 < len(hdrs); i += 2 {
		r.AppendHeader(sip.NewHeader(hdrs[i], hdrs[i+1]))
	}
	return r
}

func codes(rs []*sip.Response) []int {
	var out []int
	for _, r := range rs {
		out = append(out, r.StatusCode)
	}
	return out
}

func newSel(t *testing.T, m sip.RequestMethod, starts ...State) *Selector {
	t.Helper()
	s, _, err := NewSelector(m, starts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func calling(n int) []State {
	out := make([]State, n)
	for i := range out {
		out[i] = Calling
	}
	return out
}

func TestNewSelector(t *testing.T) {
	if _, _, err := NewSelector(sip.INVITE); !errors.Is(err, ErrNoBranches) {
		t.Errorf("no branches: %v", err)
	}
	if _, _, err := NewSelector(sip.INVITE, Proceeding); err == nil {
		t.Error("a branch starting Proceeding was accepted")
	}
	_, a, err := NewSelector(sip.INVITE, Calling, Waiting, Calling)
	if err != nil || !slices.Equal(a.StartTimerC, []int{0, 2}) {
		t.Errorf("INVITE start: %+v %v", a, err)
	}
	_, a, _ = NewSelector(sip.MESSAGE, Calling, Calling)
	if !a.Empty() {
		t.Errorf("MESSAGE has no Timer C: %+v", a)
	}
}

// TestOneAnswersOthersCancelled: three devices ring; one answers; the
// others get CANCEL (the one without a provisional only once it has one);
// their 487s go nowhere.
func TestOneAnswersOthersCancelled(t *testing.T) {
	s := newSel(t, sip.INVITE, calling(3)...)
	a := s.Response(0, res(180))
	if !slices.Equal(codes(a.Forward), []int{180}) || !slices.Equal(a.StartTimerC, []int{0}) {
		t.Fatalf("180: %+v", a)
	}
	s.Response(1, res(183))
	a = s.Response(1, res(200))
	if !slices.Equal(codes(a.Forward), []int{200}) || !slices.Equal(a.Cancel, []int{0}) || !slices.Equal(a.StopTimerC, []int{1}) {
		t.Fatalf("200: %+v", a)
	}
	if s.State(2) != Calling {
		t.Fatalf("branch 2: %v", s.State(2))
	}
	a = s.Response(2, res(100))
	if !slices.Equal(a.Cancel, []int{2}) || len(a.Forward) != 0 {
		t.Fatalf("100 on a branch due for CANCEL: %+v", a)
	}
	if a = s.Response(2, res(180)); len(a.Forward) != 0 || len(a.Cancel) != 0 || len(a.StartTimerC) != 0 {
		t.Fatalf("180 after the final went upstream, or a second CANCEL: %+v", a)
	}
	if a = s.Response(0, res(487)); len(a.Forward) != 0 || a.Respond != 0 {
		t.Fatalf("487 after the 2xx: %+v", a)
	}
	if s.Done() {
		t.Fatal("done with a branch pending")
	}
	s.Response(2, res(487))
	if !s.Done() {
		t.Fatal("not done")
	}
}

func TestSelectBest(t *testing.T) {
	cases := []struct {
		name    string
		finals  []int
		forward int
	}{
		{"busy everywhere", []int{486, 486, 486}, 486},
		{"lowest class: 3xx over 4xx and 5xx", []int{486, 302, 503}, 302},
		{"4xx over 5xx", []int{500, 404}, 404},
		{"6xx over everything", []int{404, 603, 302}, 603},
		{"401 over other 4xx", []int{486, 401, 404}, 401},
		{"401 over 407", []int{407, 401}, 401},
		{"415 over 403", []int{403, 415}, 415},
		{"420 over 484", []int{484, 420}, 420},
		{"484 over 404", []int{404, 484}, 484},
		{"busy over unavailable", []int{480, 486}, 486},
		{"not found over a timeout", []int{408, 404}, 404},
		{"unavailable over a timeout", []int{408, 480}, 480},
		{"anything over terminated", []int{487, 408}, 408},
		{"lowest 5xx", []int{504, 502}, 502},
		{"a lone 503 becomes 500", []int{503}, 500},
		{"503 chosen among 5xx becomes 500", []int{504, 503}, 500},
		{"the first of equals", []int{486, 600, 603}, 600},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSel(t, sip.INVITE, calling(len(c.finals))...)
			var a Actions
			for i, code := range c.finals {
				s.Response(i, res(180))
				a = s.Response(i, res(code))
				if i < len(c.finals)-1 && (len(a.Forward) != 0 || a.Respond != 0) {
					t.Fatalf("a final went upstream after %d of %d branches: %+v", i+1, len(c.finals), a)
				}
			}
			if !slices.Equal(codes(a.Forward), []int{c.forward}) {
				t.Fatalf("forwarded %v, want %d", codes(a.Forward), c.forward)
			}
			if !s.Done() {
				t.Error("not done")
			}
		})
	}
}

// TestSixHundredEndsTheSearch: a 6xx cancels the others and goes upstream
// once they have completed, whatever they answer then.
func TestSixHundredEndsTheSearch(t *testing.T) {
	s := newSel(t, sip.INVITE, Calling, Calling, Calling)
	s.Response(1, res(180))
	a := s.Response(0, res(603))
	if !slices.Equal(a.Cancel, []int{1}) || len(a.Forward) != 0 {
		t.Fatalf("603: %+v", a)
	}
	a = s.Response(2, res(180))
	if !slices.Equal(a.Cancel, []int{2}) {
		t.Fatalf("a provisional after the 6xx: %+v", a)
	}
	if len(a.Forward) != 1 {
		t.Fatalf("provisional before the final not forwarded: %+v", a)
	}
	s.Response(1, res(487))
	a = s.Response(2, res(486))
	if !slices.Equal(codes(a.Forward), []int{603}) {
		t.Fatalf("final: %+v", a)
	}
}

// TestChallengesAggregated: §16.7 step 7.
func TestChallengesAggregated(t *testing.T) {
	s := newSel(t, sip.INVITE, calling(4)...)
	s.Response(0, res(401, "WWW-Authenticate", `Digest realm="a", nonce="1"`))
	s.Response(1, res(407, "Proxy-Authenticate", `Digest realm="b", nonce="2"`))
	s.Response(2, res(401, "WWW-Authenticate", `Digest realm="c", nonce="3"`, "WWW-Authenticate", `Digest realm="a", nonce="1"`))
	a := s.Response(3, res(486))
	if len(a.Forward) != 1 || a.Forward[0].StatusCode != 401 {
		t.Fatalf("forwarded %v", codes(a.Forward))
	}
	var www, proxy []string
	for _, h := range a.Forward[0].GetHeaders("WWW-Authenticate") {
		www = append(www, h.Value())
	}
	for _, h := range a.Forward[0].GetHeaders("Proxy-Authenticate") {
		proxy = append(proxy, h.Value())
	}
	if !slices.Equal(www, []string{`Digest realm="a", nonce="1"`, `Digest realm="c", nonce="3"`}) ||
		!slices.Equal(proxy, []string{`Digest realm="b", nonce="2"`}) {
		t.Errorf("challenges: WWW %q, Proxy %q", www, proxy)
	}
	if n := len(s.branches[0].res.GetHeaders("WWW-Authenticate")); n != 1 {
		t.Errorf("the branch's own response was modified: %d challenges", n)
	}
}

// TestTimerC: §16.8.
func TestTimerC(t *testing.T) {
	s := newSel(t, sip.INVITE, Calling, Calling)
	s.Response(0, res(180))
	a := s.TimerC(0)
	if !slices.Equal(a.Cancel, []int{0}) || s.State(0) != Proceeding {
		t.Fatalf("Timer C after a provisional: %+v, %v", a, s.State(0))
	}
	if a = s.TimerC(0); len(a.Cancel) != 0 {
		t.Fatalf("a second CANCEL: %+v", a)
	}
	if a = s.Response(0, res(180)); len(a.StartTimerC) != 0 {
		t.Fatalf("Timer C restarted on a cancelled branch: %+v", a)
	}
	a = s.TimerC(1)
	if !slices.Equal(a.StopTimerC, []int{1}) || s.State(1) != Completed {
		t.Fatalf("Timer C without a provisional: %+v", a)
	}
	a = s.Response(0, res(487))
	if a.Respond != 408 || len(a.Forward) != 0 {
		t.Errorf("final after Timer C: %+v (408 of branch 1 and 487 of branch 0: 408 says more)", a)
	}
}

func TestTimerCOnlyTimeouts(t *testing.T) {
	s := newSel(t, sip.INVITE, Calling)
	a := s.TimerC(0)
	if a.Respond != 408 || len(a.Forward) != 0 {
		t.Fatalf("a lone branch that never answered: %+v", a)
	}
}

// TestTransportError: §16.9 (503, sent upstream as 500).
func TestTransportError(t *testing.T) {
	s := newSel(t, sip.INVITE, Calling, Calling)
	s.Failed(0, 503, "Service Unavailable: node unreachable")
	a := s.Failed(1, 503, "Service Unavailable: node unreachable")
	if a.Respond != 500 {
		t.Fatalf("two unreachable nodes: %+v", a)
	}
	s = newSel(t, sip.INVITE, Calling, Calling)
	s.Failed(0, 503, "")
	a = s.Response(1, res(486))
	if !slices.Equal(codes(a.Forward), []int{486}) {
		t.Fatalf("busy and unreachable: %+v", a)
	}
}

// TestWaitingBranch: a device being woken by a push.
func TestWaitingBranch(t *testing.T) {
	s, a, _ := NewSelector(sip.INVITE, Calling, Waiting)
	if !slices.Equal(a.StartTimerC, []int{0}) {
		t.Fatalf("start: %+v", a)
	}
	if a = s.Response(1, res(180)); !a.Empty() {
		t.Fatalf("a response on a branch not sent: %+v", a)
	}
	ok, a := s.Send(1)
	if !ok || !slices.Equal(a.StartTimerC, []int{1}) {
		t.Fatalf("woke: %v %+v", ok, a)
	}
	if ok, _ := s.Send(1); ok {
		t.Fatal("sent twice")
	}
	a = s.Response(1, res(200))
	if !slices.Equal(codes(a.Forward), []int{200}) {
		t.Fatalf("woken device answered: %+v", a)
	}

	// The desk phone answers before the sleeping phone wakes.
	s, _, _ = NewSelector(sip.INVITE, Calling, Waiting)
	a = s.Response(0, res(200))
	if !slices.Equal(a.Abandon, []int{1}) {
		t.Fatalf("the waiting branch is not dropped: %+v", a)
	}
	if ok, _ := s.Send(1); ok {
		t.Fatal("an abandoned branch was sent")
	}
	if !s.Done() {
		t.Error("not done")
	}

	// The phone never wakes.
	s, _, _ = NewSelector(sip.INVITE, Waiting)
	a = s.TimerC(0)
	if !slices.Equal(a.Abandon, []int{0}) || a.Respond != 480 {
		t.Fatalf("no wake within Timer C: %+v", a)
	}
}

// TestCancelFromUpstream: §16.10.
func TestCancelFromUpstream(t *testing.T) {
	s := newSel(t, sip.INVITE, Calling, Calling, Waiting)
	s.Response(0, res(180))
	a := s.CancelAll()
	if !slices.Equal(a.Cancel, []int{0}) || !slices.Equal(a.Abandon, []int{2}) || len(a.Forward) != 0 || a.Respond != 0 {
		t.Fatalf("CANCEL: %+v", a)
	}
	if a = s.Response(1, res(100)); !slices.Equal(a.Cancel, []int{1}) {
		t.Fatalf("100 after CANCEL: %+v", a)
	}
	s.Response(0, res(487))
	a = s.Response(1, res(487))
	if !slices.Equal(codes(a.Forward), []int{487}) || !s.Done() {
		t.Fatalf("final: %+v", a)
	}
	if a = s.CancelAll(); !a.Empty() {
		t.Errorf("a second CANCEL: %+v", a)
	}
}

// TestLateAndDouble2xx: every 2xx of an INVITE goes upstream.
func TestLateAndDouble2xx(t *testing.T) {
	s := newSel(t, sip.INVITE, Calling, Calling)
	s.Response(0, res(180))
	s.Response(1, res(180))
	s.CancelAll()
	if a := s.Response(0, res(200)); !slices.Equal(codes(a.Forward), []int{200}) {
		t.Fatalf("2xx racing the CANCEL: %+v", a)
	}
	if a := s.Response(1, res(200)); !slices.Equal(codes(a.Forward), []int{200}) {
		t.Fatalf("second 2xx: %+v", a)
	}
	if a := s.Response(1, res(200)); !slices.Equal(codes(a.Forward), []int{200}) {
		t.Fatalf("retransmitted 2xx: %+v", a)
	}
	if !s.Done() {
		t.Error("not done")
	}
}

// TestNonInvite: MESSAGE forked to two devices.
func TestNonInvite(t *testing.T) {
	s := newSel(t, sip.MESSAGE, Calling, Calling, Waiting)
	if a := s.Response(0, res(100)); !a.Empty() {
		t.Fatalf("100: %+v", a)
	}
	a := s.Response(0, res(200))
	if !slices.Equal(codes(a.Forward), []int{200}) || len(a.Cancel) != 0 || !slices.Equal(a.Abandon, []int{2}) {
		t.Fatalf("first 200: %+v", a)
	}
	if a = s.Response(1, res(200)); len(a.Forward) != 0 {
		t.Fatalf("second 200: %+v", a)
	}
	if !s.Done() {
		t.Error("not done")
	}
	s = newSel(t, sip.MESSAGE, Calling, Calling)
	s.Response(0, res(480))
	if a = s.Response(1, res(404)); !slices.Equal(codes(a.Forward), []int{404}) {
		t.Fatalf("MESSAGE failures: %+v", a)
	}
	s = newSel(t, sip.MESSAGE, Calling, Calling)
	if a = s.Response(0, res(603)); len(a.Cancel) != 0 || len(a.Forward) != 0 {
		t.Fatalf("MESSAGE 603: %+v", a)
	}
	if a = s.TimerC(1); !a.Empty() {
		t.Fatalf("Timer C of a MESSAGE: %+v", a)
	}
}

func TestSelectorIgnoresNonsense(t *testing.T) {
	s := newSel(t, sip.INVITE, Calling)
	for _, a := range []Actions{s.Response(-1, res(200)), s.Response(1, res(200)), s.Response(0, nil),
		s.TimerC(5), s.Failed(7, 503, "")} {
		if !a.Empty() {
			t.Errorf("%+v", a)
		}
	}
	if ok, _ := s.Send(3); ok {
		t.Error("Send of a missing branch")
	}
	s.Response(0, res(486))
	if a := s.Response(0, res(486)); !a.Empty() {
		t.Errorf("a retransmitted final: %+v", a)
	}
	if a := s.Failed(0, 503, ""); !a.Empty() {
		t.Errorf("a failure after the final: %+v", a)
	}
	if len(s.Pending()) != 0 {
		t.Error(s.Pending())
	}
	if Waiting.String() != "waiting" || State(9).String() != "State(9)" {
		t.Error("State.String")
	}
}
