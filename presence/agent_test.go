package presence

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

const alice = "sip:alice@pastry"

// counter is a deterministic entity-tag source.
type counter struct{ n byte }

func (c *counter) Read(p []byte) (int, error) {
	c.n++
	for i := range p {
		p[i] = c.n
	}
	return len(p), nil
}

func newAgent(t *testing.T, opts ...Option) *Agent {
	t.Helper()
	a, err := NewAgent(append([]Option{WithRand(&counter{})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func pidf(entity string, tuples ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity=%q>`, entity)
	for _, tu := range tuples {
		id, basic, _ := strings.Cut(tu, "=")
		fmt.Fprintf(&b, `<tuple id=%q><status><basic>%s</basic></status></tuple>`, id, basic)
	}
	b.WriteString(`</presence>`)
	return []byte(b.String())
}

func publish(ifMatch string, expires int, body []byte) PublishRequest {
	return PublishRequest{Presentity: alice, Publisher: alice, Event: EventPresence, IfMatch: ifMatch, Expires: expires,
		ContentType: ContentTypePIDF, Body: body}
}

func sub(callID, watcher, event string, expires int) SubscribeRequest {
	return SubscribeRequest{ID: SubID{CallID: callID, RemoteTag: "r-" + callID, LocalTag: "l-" + callID, Event: event},
		Watcher: watcher, Presentity: alice, Expires: expires}
}

// tuples returns "id=basic,…" of a PIDF body.
func tuples(t *testing.T, body []byte) string {
	t.Helper()
	p, err := ParsePIDF(body)
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	var out []string
	for _, tu := range p.Tuples {
		out = append(out, tu.ID+"="+tu.Basic)
	}
	return strings.Join(out, ",")
}

func one(t *testing.T, ns []Notify) Notify {
	t.Helper()
	if len(ns) != 1 {
		t.Fatalf("%d NOTIFYs, want 1: %+v", len(ns), ns)
	}
	return ns[0]
}

func TestPublishRFC3903(t *testing.T) {
	a := newAgent(t, WithExists(func(p string) bool { return p != "sip:ghost@pastry" }))
	cases := []struct {
		name string
		req  PublishRequest
		want int
	}{
		{"another event package", func() PublishRequest { r := publish("", -1, pidf(alice, "a=open")); r.Event = "dialog"; return r }(), 489},
		{"someone else's presence", func() PublishRequest {
			r := publish("", -1, pidf(alice, "a=open"))
			r.Publisher = "sip:eve@pastry"
			return r
		}(), 403},
		{"an unknown presentity", func() PublishRequest {
			r := publish("", -1, pidf("sip:ghost@pastry", "a=open"))
			r.Presentity, r.Publisher = "sip:ghost@pastry", "sip:ghost@pastry"
			return r
		}(), 404},
		{"too short", publish("", 30, pidf(alice, "a=open")), 423},
		{"initial without body", publish("", -1, nil), 400},
		{"initial with Expires 0", publish("", 0, pidf(alice, "a=open")), 400},
		{"another media type", func() PublishRequest {
			r := publish("", -1, pidf(alice, "a=open"))
			r.ContentType = "application/xpidf+xml"
			return r
		}(), 415},
		{"not PIDF", publish("", -1, []byte("<x/>")), 400},
		{"another entity", publish("", -1, pidf("pres:bob@pastry", "a=open")), 400},
		{"too large", publish("", -1, bytes.Repeat([]byte(" "), MaxDocument+1)), 413},
		{"an unknown entity tag", publish("nope", -1, nil), 412},
	}
	for _, c := range cases {
		r, ns := a.Publish(t0, c.req)
		if r.Status != c.want || len(ns) != 0 {
			t.Errorf("%s: %d %q, want %d", c.name, r.Status, r.Reason, c.want)
		}
		if r.Status == 423 && r.MinExpires != 60 || r.Status == 489 && r.AllowEvent != EventPresence || r.Status == 415 && r.Accept != ContentTypePIDF {
			t.Errorf("%s: %+v", c.name, r)
		}
	}

	r, _ := a.Publish(t0, publish("", -1, pidf("pres:alice@pastry", "desk=open")))
	if r.Status != 200 || r.ETag == "" || r.Expires != 3600 {
		t.Fatalf("initial: %+v", r)
	}
	etag1 := r.ETag
	r, _ = a.Publish(t0.Add(time.Minute), publish(etag1, 7200, nil)) // refresh
	if r.Status != 200 || r.ETag == etag1 || r.Expires != 7200 {
		t.Fatalf("refresh: %+v", r)
	}
	if r2, _ := a.Publish(t0, publish(etag1, -1, nil)); r2.Status != 412 {
		t.Errorf("the replaced entity tag: %d", r2.Status)
	}
	r, _ = a.Publish(t0.Add(2*time.Minute), publish(r.ETag, 999999, pidf(alice, "desk=closed"))) // modify
	if r.Status != 200 || r.Expires != int(DefaultLimits.MaxExpires/time.Second) {
		t.Fatalf("modify: %+v", r)
	}
	if got := tuples(t, mustMarshal(t, a.Document(alice))); got != "desk=closed" {
		t.Errorf("after modify: %s", got)
	}
	r, _ = a.Publish(t0.Add(3*time.Minute), publish(r.ETag, 0, nil)) // remove
	if r.Status != 200 || r.ETag != "" {
		t.Fatalf("remove: %+v", r)
	}
	if got := tuples(t, mustMarshal(t, a.Document(alice))); got != "reg=closed" {
		t.Errorf("after remove: %s", got)
	}
	if len(a.users) != 0 {
		t.Errorf("state left after removal: %d presentities", len(a.users))
	}
	// A publication lapses.
	r, _ = a.Publish(t0, publish("", 60, pidf(alice, "desk=open")))
	a.Tick(t0.Add(61 * time.Second))
	if r2, _ := a.Publish(t0.Add(62*time.Second), publish(r.ETag, -1, nil)); r2.Status != 412 {
		t.Errorf("refresh of a lapsed publication: %d", r2.Status)
	}
	// Bounded per presentity.
	for i := range DefaultLimits.MaxPubsPerPresentity {
		if r, _ := a.Publish(t0, publish("", -1, pidf(alice, fmt.Sprintf("d%d=open", i)))); r.Status != 200 {
			t.Fatal(r)
		}
	}
	if r, _ := a.Publish(t0, publish("", -1, pidf(alice, "x=open"))); r.Status != 403 {
		t.Errorf("a publication over the bound: %d", r.Status)
	}
}

func mustMarshal(t *testing.T, p *Presence) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPresenceSubscription: a watcher of alice's presence sees it follow
// her registrations and publications, at most once per 5 s.
func TestPresenceSubscription(t *testing.T) {
	a := newAgent(t)
	r, ns := a.Subscribe(t0, sub("c1", "sip:bob@far", EventPresence, -1))
	n := one(t, ns)
	if r.Status != 200 || r.Expires != 3600 || n.State != "active;expires=3600" || n.ContentType != ContentTypePIDF {
		t.Fatalf("subscribe: %+v %+v", r, n)
	}
	if got := tuples(t, n.Body); got != "reg=closed" {
		t.Errorf("initial state: %s", got)
	}
	desk := RegisteredContact{ID: "desk", URI: "sip:alice@10.0.0.2", Since: t0, Expires: t0.Add(time.Hour), State: "active", Event: "registered"}
	// Within the throttle: held back.
	if ns := a.SetRegistration(t0.Add(time.Second), alice, []RegisteredContact{desk}); len(ns) != 0 {
		t.Fatalf("a NOTIFY within 5 s of the last: %+v", ns)
	}
	if d := a.NextDeadline(); !d.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("next deadline %v", d)
	}
	n = one(t, a.Tick(t0.Add(5*time.Second)))
	if got := tuples(t, n.Body); got != "reg-"+shortHash("desk")+"=open" || strings.Contains(string(n.Body), "10.0.0.2") {
		t.Errorf("after the registration: %s\n%s", got, n.Body)
	}
	// A re-registration that changes nothing: no NOTIFY.
	if ns := a.SetRegistration(t0.Add(20*time.Second), alice, []RegisteredContact{desk}); len(ns) != 0 {
		t.Errorf("a NOTIFY without a change: %+v", ns)
	}
	// A publication overrides the registration state, newest first.
	a.Publish(t0.Add(30*time.Second), publish("", -1, pidf(alice, "laptop=open", "shared=closed")))
	r2, ns := a.Publish(t0.Add(40*time.Second), publish("", -1, pidf(alice, "phone=closed", "shared=open")))
	if r2.Status != 200 {
		t.Fatal(r2)
	}
	if n = one(t, ns); tuples(t, n.Body) != "phone=closed,shared=open,laptop=open" {
		t.Errorf("composed: %s", tuples(t, n.Body))
	}
	// Refresh: a NOTIFY at once, whatever the throttle.
	r, ns = a.Subscribe(t0.Add(41*time.Second), SubscribeRequest{ID: sub("c1", "", EventPresence, 0).ID, InDialog: true,
		Watcher: "sip:bob@far", Presentity: alice, Expires: 600})
	if n = one(t, ns); r.Expires != 600 || n.State != "active;expires=600" {
		t.Errorf("refresh: %+v %+v", r, n)
	}
	// Unsubscribe.
	r, ns = a.Subscribe(t0.Add(50*time.Second), SubscribeRequest{ID: sub("c1", "", EventPresence, 0).ID, InDialog: true,
		Watcher: "sip:bob@far", Presentity: alice, Expires: 0})
	if n = one(t, ns); r.Status != 200 || n.State != "terminated;reason=timeout" || len(n.Body) == 0 || a.Subscriptions() != 0 {
		t.Errorf("unsubscribe: %+v %+v", r, n)
	}
	// In-dialog refresh of a subscription that is gone.
	if r, _ = a.Subscribe(t0.Add(time.Minute), SubscribeRequest{ID: sub("c1", "", EventPresence, 0).ID, InDialog: true,
		Watcher: "sip:bob@far", Presentity: alice, Expires: 600}); r.Status != 481 {
		t.Errorf("refresh after unsubscribe: %d", r.Status)
	}
	// A fetch.
	r, ns = a.Subscribe(t0.Add(time.Minute), sub("c2", "sip:carol@far", EventPresence, 0))
	if n = one(t, ns); r.Status != 200 || n.State != "terminated;reason=timeout" || n.ContentType != ContentTypePIDF || a.Subscriptions() != 0 {
		t.Errorf("fetch: %+v %+v", r, n)
	}
}

func TestSubscribeRefused(t *testing.T) {
	a := newAgent(t, WithExists(func(p string) bool { return p == alice }))
	withAccept := func(r SubscribeRequest, accept ...string) SubscribeRequest { r.Accept = accept; return r }
	cases := []struct {
		name string
		req  SubscribeRequest
		want int
	}{
		{"an unknown package", sub("c1", "sip:bob@far", "dialog", -1), 489},
		{"a body the watcher does not take", withAccept(sub("c1", "sip:bob@far", EventPresence, -1), "application/xpidf+xml"), 406},
		{"too short", sub("c1", "sip:bob@far", EventPresence, 10), 423},
		{"someone else's registrations", sub("c1", "sip:bob@far", EventReg, -1), 403},
		{"someone else's waiting messages", sub("c1", "sip:bob@far", EventMessageSummary, -1), 403},
		{"an unknown presentity", func() SubscribeRequest {
			r := sub("c1", "sip:bob@far", EventPresence, -1)
			r.Presentity = "sip:ghost@pastry"
			return r
		}(), 404},
	}
	for _, c := range cases {
		if r, ns := a.Subscribe(t0, c.req); r.Status != c.want || len(ns) != 0 {
			t.Errorf("%s: %+v", c.name, r)
		}
	}
	for _, acc := range [][]string{{"*/*"}, {"application/*"}, {"text/plain, application/pidf+xml;q=0.5"}} {
		if r, _ := a.Subscribe(t0, withAccept(sub("ok"+acc[0], "sip:bob@far", EventPresence, -1), acc...)); r.Status != 200 {
			t.Errorf("Accept %q: %d", acc, r.Status)
		}
	}
}

func TestSubscriptionBounds(t *testing.T) {
	lim := DefaultLimits
	lim.MaxSubsPerPresentity, lim.MaxSubsPerWatcher, lim.MaxSubscriptions = 3, 2, 5
	a := newAgent(t, WithLimits(lim))
	for i := range 3 {
		if r, _ := a.Subscribe(t0, sub(fmt.Sprint("p", i), fmt.Sprintf("sip:w%d@far", i), EventPresence, -1)); r.Status != 200 {
			t.Fatal(r)
		}
	}
	if r, _ := a.Subscribe(t0, sub("p4", "sip:w9@far", EventPresence, -1)); r.Status != 403 {
		t.Errorf("a fourth watcher of alice: %d", r.Status)
	}
	bob := func(id string) SubscribeRequest {
		r := sub(id, "sip:w0@far", EventPresence, -1)
		r.Presentity = "sip:bob@pastry"
		return r
	}
	if r, _ := a.Subscribe(t0, bob("b1")); r.Status != 200 {
		t.Fatal(r)
	}
	if r, _ := a.Subscribe(t0, bob("b2")); r.Status != 403 {
		t.Errorf("a third subscription of one watcher: %d", r.Status)
	}
	dave := sub("d1", "sip:w6@far", EventPresence, -1)
	dave.Presentity = "sip:dave@pastry"
	if r, _ := a.Subscribe(t0, dave); r.Status != 200 {
		t.Fatal(r)
	}
	carol := sub("x1", "sip:w5@far", EventPresence, -1)
	carol.Presentity = "sip:carol@pastry"
	if r, _ := a.Subscribe(t0, carol); r.Status != 503 {
		t.Errorf("over the agent's bound: %d", r.Status)
	}
	if _, err := NewAgent(WithLimits(Limits{})); err == nil {
		t.Error("zero limits accepted")
	}
}

// TestRegEvent: RFC 3680 for the user's own devices.
func TestRegEvent(t *testing.T) {
	a := newAgent(t, WithLimits(func() Limits { l := DefaultLimits; l.Throttle = 0; return l }()))
	r, ns := a.Subscribe(t0, sub("r1", alice, EventReg, -1))
	n := one(t, ns)
	if r.Expires != 3761 || n.ContentType != ContentTypeRegInfo {
		t.Fatalf("%+v %+v", r, n)
	}
	ri, err := ParseRegInfo(n.Body)
	if err != nil || ri.Version != 0 || ri.Registrations[0].State != "init" || ri.Registrations[0].AOR != alice {
		t.Fatalf("initial: %+v %v", ri, err)
	}
	desk := RegisteredContact{ID: "desk", URI: "sip:alice@10.0.0.2", Instance: "<urn:uuid:desk>", RegID: 1, Since: t0,
		Expires: t0.Add(time.Hour), State: "active", Event: "registered", CallID: "x", CSeq: 7,
		PubGRUU: "sip:alice@pastry;gr=urn:uuid:desk"}
	n = one(t, a.SetRegistration(t0.Add(10*time.Second), alice, []RegisteredContact{desk}))
	ri, _ = ParseRegInfo(n.Body)
	c := ri.Registrations[0].Contacts[0]
	if ri.Version != 1 || ri.Registrations[0].State != "active" || c.URI != desk.URI || c.Event != "registered" ||
		*c.Expires != 3590 || *c.Duration != 10 || *c.CSeq != 7 || c.PubGRUU != desk.PubGRUU || len(c.Params) != 2 {
		t.Fatalf("registered: version %d %+v", ri.Version, c)
	}
	desk.State, desk.Event = "terminated", "unregistered"
	n = one(t, a.SetRegistration(t0.Add(20*time.Second), alice, []RegisteredContact{desk}))
	ri, _ = ParseRegInfo(n.Body)
	if ri.Version != 2 || ri.Registrations[0].State != "terminated" || ri.Registrations[0].Contacts[0].Event != "unregistered" {
		t.Fatalf("unregistered: %+v", ri.Registrations[0])
	}
}

// TestMessageSummary: RFC 3842 for waiting messages (the mailbox).
func TestMessageSummary(t *testing.T) {
	a := newAgent(t, WithLimits(func() Limits { l := DefaultLimits; l.Throttle = 0; return l }()))
	_, ns := a.Subscribe(t0, sub("m1", alice, EventMessageSummary, -1))
	s, err := ParseSummary(one(t, ns).Body)
	if err != nil || s.Waiting || s.Account != alice {
		t.Fatalf("%+v %v", s, err)
	}
	n := one(t, a.SetWaiting(t0.Add(time.Second), alice, 2, 0))
	if string(n.Body) != "Messages-Waiting: yes\r\nMessage-Account: sip:alice@pastry\r\nText-Message: 2/0\r\n" || n.ContentType != ContentTypeSummary {
		t.Errorf("%q", n.Body)
	}
	n = one(t, a.SetWaiting(t0.Add(2*time.Second), alice, 0, 2))
	if s, _ := ParseSummary(n.Body); s.Waiting || s.Counts[0].Old != 2 {
		t.Errorf("%q", n.Body)
	}
}

// TestAuthorization: a pending subscription gets no state until the user
// allows it; a denied one ends with reason rejected.
func TestAuthorization(t *testing.T) {
	a := newAgent(t, WithAuthorizer(func(w, p, e string) Decision {
		if w == "sip:stranger@far" {
			return Pending
		}
		return Allow
	}))
	_, ns := a.Subscribe(t0, sub("s1", "sip:stranger@far", EventPresence, -1))
	if n := one(t, ns); n.State != "pending;expires=3600" || n.Body != nil {
		t.Fatalf("pending: %+v", n)
	}
	if ns := a.SetRegistration(t0.Add(time.Minute), alice, []RegisteredContact{{ID: "d", State: "active", Expires: t0.Add(time.Hour)}}); len(ns) != 0 {
		t.Errorf("a pending watcher got state: %+v", ns)
	}
	n := one(t, a.Authorize(t0.Add(2*time.Minute), sub("s1", "", EventPresence, 0).ID, Allow))
	if !strings.HasPrefix(n.State, "active;") || !strings.Contains(tuples(t, n.Body), "open") {
		t.Errorf("allowed: %+v", n)
	}
	n = one(t, a.Authorize(t0.Add(3*time.Minute), sub("s1", "", EventPresence, 0).ID, Deny))
	if n.State != "terminated;reason=rejected" || n.Body != nil || a.Subscriptions() != 0 {
		t.Errorf("denied: %+v", n)
	}
}

// TestExpiryAndFailures: subscriptions lapse (reason timeout), end on a
// failed NOTIFY, and all end at shutdown (reason deactivated).
func TestExpiryAndFailures(t *testing.T) {
	a := newAgent(t)
	a.Subscribe(t0, sub("e1", "sip:bob@far", EventPresence, 60))
	a.Subscribe(t0, sub("e2", "sip:carol@far", EventPresence, 3600))
	a.Subscribe(t0, sub("e3", "sip:dave@far", EventPresence, 3600))
	a.Subscribe(t0, sub("e4", "sip:erin@far", EventPresence, 3600))
	if d := a.NextDeadline(); !d.Equal(t0.Add(time.Minute)) {
		t.Errorf("next deadline %v", d)
	}
	n := one(t, a.Tick(t0.Add(time.Minute)))
	if n.Sub.CallID != "e1" || n.State != "terminated;reason=timeout" {
		t.Errorf("lapsed: %+v", n)
	}
	a.NotifyResult(sub("e2", "", EventPresence, 0).ID, 200)
	a.NotifyResult(sub("e2", "", EventPresence, 0).ID, 407)
	if a.Subscriptions() != 3 {
		t.Fatalf("a 2xx or a challenge ended a subscription: %d left", a.Subscriptions())
	}
	a.NotifyResult(sub("e2", "", EventPresence, 0).ID, 481)
	a.NotifyResult(sub("e3", "", EventPresence, 0).ID, 408)
	if a.Subscriptions() != 1 {
		t.Fatalf("after a 481 and a timeout: %d left", a.Subscriptions())
	}
	n = one(t, a.Shutdown(t0.Add(2*time.Minute)))
	if n.Sub.CallID != "e4" || n.State != "terminated;reason=deactivated" || a.Subscriptions() != 0 || len(a.users) != 0 || len(a.watchers) != 0 {
		t.Errorf("shutdown: %+v, %d subs, %d users", n, a.Subscriptions(), len(a.users))
	}
	a.Subscribe(t0, sub("e5", "sip:bob@far", EventPresence, -1))
	if n := one(t, a.Terminate(t0, alice, ReasonNoresource)); n.State != "terminated;reason=noresource" {
		t.Errorf("%+v", n)
	}
}
