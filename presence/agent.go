package presence

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"slices"
	"strings"
	"time"
)

// Event packages the agent serves.
const (
	EventPresence       = "presence"        // RFC 3856, PIDF bodies
	EventReg            = "reg"             // RFC 3680, reginfo bodies
	EventMessageSummary = "message-summary" // RFC 3842, waiting messages
)

// Subscription termination reasons (RFC 6665 §4.2.2).
const (
	ReasonDeactivated = "deactivated" // retry at once (the user's node changed)
	ReasonProbation   = "probation"
	ReasonRejected    = "rejected" // the watcher is no longer allowed
	ReasonTimeout     = "timeout"  // expired, or unsubscribed
	ReasonGiveup      = "giveup"
	ReasonNoresource  = "noresource" // the presentity is gone
)

// Decision is an authorization decision for a watcher.
type Decision int

// Decisions.
const (
	Allow   Decision = iota
	Pending          // subscription pending, NOTIFYs carry no state
	Deny             // 403
)

// DefaultAuthorize lets anyone watch presence (the overlay tells anyone
// who asks whether a user is registered; published documents are the
// user's choice) and only the user itself watch reg (which shows contact
// addresses) and message-summary (which counts waiting messages).
func DefaultAuthorize(watcher, presentity, event string) Decision {
	if event == EventPresence || watcher == presentity {
		return Allow
	}
	return Deny
}

// Limits bound the agent's state.
type Limits struct {
	MinExpires            time.Duration // shortest subscription or publication accepted (423 below)
	MaxExpires            time.Duration // longest granted (a longer request is cut to it)
	Throttle              time.Duration // least time between two NOTIFYs of one subscription
	MaxSubscriptions      int
	MaxSubsPerPresentity  int
	MaxSubsPerWatcher     int
	MaxPresentities       int
	MaxPubsPerPresentity  int
	DefaultPublishExpires time.Duration
}

// DefaultLimits are the agent's default limits.
var DefaultLimits = Limits{
	MinExpires:            60 * time.Second,
	MaxExpires:            24 * time.Hour,
	Throttle:              5 * time.Second, // RFC 3856 §6.6.3: at most one notification per 5 s
	MaxSubscriptions:      16384,
	MaxSubsPerPresentity:  64,
	MaxSubsPerWatcher:     32,
	MaxPresentities:       16384,
	MaxPubsPerPresentity:  16,
	DefaultPublishExpires: time.Hour, // RFC 3903 §5 for presence
}

// Default subscription durations of the packages.
var defaultSubExpires = map[string]time.Duration{
	EventPresence:       time.Hour,          // RFC 3856 §6.4
	EventReg:            3761 * time.Second, // RFC 3680 §5.4
	EventMessageSummary: time.Hour,          // RFC 3842 §4.2
}

var contentTypes = map[string]string{
	EventPresence:       ContentTypePIDF,
	EventReg:            ContentTypeRegInfo,
	EventMessageSummary: ContentTypeSummary,
}

// Option configures an Agent.
type Option func(*config) error

type config struct {
	lim       Limits
	authorize func(watcher, presentity, event string) Decision
	exists    func(presentity string) bool
	rand      io.Reader
}

// WithLimits sets the limits (default DefaultLimits).
func WithLimits(l Limits) Option {
	return func(c *config) error {
		if l.MinExpires <= 0 || l.MaxExpires < l.MinExpires || l.Throttle < 0 || l.MaxSubscriptions < 1 ||
			l.MaxSubsPerPresentity < 1 || l.MaxSubsPerWatcher < 1 || l.MaxPresentities < 1 || l.MaxPubsPerPresentity < 1 ||
			l.DefaultPublishExpires < l.MinExpires || l.DefaultPublishExpires > l.MaxExpires {
			return fmt.Errorf("presence: WithLimits: %+v", l)
		}
		c.lim = l
		return nil
	}
}

// WithAuthorizer sets who may watch whom (default DefaultAuthorize).
func WithAuthorizer(f func(watcher, presentity, event string) Decision) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("presence: WithAuthorizer: nil")
		}
		c.authorize = f
		return nil
	}
}

// WithExists tells the agent which presentities exist (the users this node
// serves); others get 404 (default: all).
func WithExists(f func(presentity string) bool) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("presence: WithExists: nil")
		}
		c.exists = f
		return nil
	}
}

// WithRand sets the source of entity tags (default crypto/rand).
func WithRand(r io.Reader) Option {
	return func(c *config) error {
		if r == nil {
			return errors.New("presence: WithRand: nil")
		}
		c.rand = r
		return nil
	}
}

// SubID identifies a subscription: its dialog (Call-ID, the subscriber's
// tag, the notifier's tag), the event package and the Event header's id
// parameter.
type SubID struct {
	CallID, RemoteTag, LocalTag string
	Event, EventID              string
}

// Notify is a NOTIFY the agent wants sent in a subscription's dialog.
type Notify struct {
	Sub         SubID
	Watcher     string
	Presentity  string
	State       string // the Subscription-State header value
	ContentType string // "" when there is no body
	Body        []byte
}

// RegisteredContact is a contact of a presentity as the registrar knows
// it, for the reg event package and for presence derived from
// registrations.
type RegisteredContact struct {
	ID       string // stable per contact (the registrar's choice)
	URI      string // the contact URI (only watchers allowed reg see it)
	Instance string // +sip.instance
	RegID    int
	Q        string
	CallID   string
	CSeq     uint32
	Since    time.Time
	Expires  time.Time
	State    string // "active", or "terminated" for a contact that just ended
	Event    string // its last change: registered, refreshed, shortened, expired, unregistered, deactivated, …
	PubGRUU  string
}

type publication struct {
	etag    string
	doc     *Presence
	expires time.Time
	at      time.Time
}

type presentity struct {
	aor      string
	pubs     map[string]*publication
	contacts []RegisteredContact
	newMsgs  uint32
	oldMsgs  uint32
	subs     map[SubID]*subscription
}

type subscription struct {
	id         SubID
	watcher    string
	presentity string
	pending    bool
	expires    time.Time
	lastNotify time.Time
	dirty      bool
	version    uint64 // reginfo version: one per NOTIFY
	lastState  []byte // the state last sent, to skip NOTIFYs that change nothing
}

// Agent is the presence agent (RFC 3856) and notifier (RFC 6665) for the
// users a node serves: it takes PUBLISH (RFC 3903), the registrar's state
// and the count of waiting messages, keeps subscriptions to the presence,
// reg and message-summary packages, and says which NOTIFYs to send. It is a
// pure state machine: every method takes the time; it sends nothing, starts
// no goroutine, reads no clock; Tick must be called at NextDeadline. Not
// safe for concurrent use: one goroutine (or a lock) drives it.
type Agent struct {
	cfg      config
	users    map[string]*presentity
	subs     map[SubID]*subscription
	watchers map[string]int
}

// NewAgent returns an agent.
func NewAgent(opts ...Option) (*Agent, error) {
	cfg := config{lim: DefaultLimits, authorize: DefaultAuthorize, exists: func(string) bool { return true }, rand: rand.Reader}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &Agent{cfg: cfg, users: map[string]*presentity{}, subs: map[SubID]*subscription{}, watchers: map[string]int{}}, nil
}

// Result is the answer to a PUBLISH or SUBSCRIBE: a status and reason, and
// for a 2xx the headers to add (Expires, SIP-ETag), for 423 Min-Expires,
// for 489 Allow-Events, for 415/406 Accept.
type Result struct {
	Status     int
	Reason     string
	Expires    int    // seconds granted (2xx)
	ETag       string // SIP-ETag of a successful PUBLISH (not on removal)
	MinExpires int    // 423
	Accept     string // 406, 415
	AllowEvent string // 489
}

func fail(status int, reason string) Result { return Result{Status: status, Reason: reason} }

// PublishRequest is a PUBLISH (RFC 3903) as the agent needs it.
type PublishRequest struct {
	Presentity  string // the Request-URI's AOR
	Publisher   string // the authenticated From AOR
	Event       string // the Event header's package
	IfMatch     string // SIP-If-Match, "" if absent
	Expires     int    // the Expires header, -1 if absent
	ContentType string
	Body        []byte
}

// Publish handles a PUBLISH.
func (a *Agent) Publish(now time.Time, req PublishRequest) (Result, []Notify) {
	if req.Event != EventPresence {
		r := fail(489, "Bad Event")
		r.AllowEvent = EventPresence
		return r, nil
	}
	if req.Publisher != req.Presentity {
		return fail(403, "Forbidden: only the presentity publishes its presence"), nil
	}
	if !a.cfg.exists(req.Presentity) {
		return fail(404, "Not Found"), nil
	}
	if req.Expires > 0 && time.Duration(req.Expires)*time.Second < a.cfg.lim.MinExpires {
		r := fail(423, "Interval Too Brief")
		r.MinExpires = int(a.cfg.lim.MinExpires / time.Second)
		return r, nil
	}
	var doc *Presence
	if len(req.Body) > 0 {
		if len(req.Body) > MaxDocument {
			return fail(413, "Request Entity Too Large"), nil
		}
		if mt, _, err := mime.ParseMediaType(req.ContentType); err != nil || mt != ContentTypePIDF {
			r := fail(415, "Unsupported Media Type")
			r.Accept = ContentTypePIDF
			return r, nil
		}
		var err error
		if doc, err = ParsePIDF(req.Body); err != nil {
			return fail(400, "Bad Request: "+err.Error()), nil
		}
		if !sameEntity(doc.Entity, req.Presentity) {
			return fail(400, "Bad Request: the document's entity is another presentity"), nil
		}
	}
	u := a.users[req.Presentity]
	if req.IfMatch == "" {
		switch {
		case doc == nil:
			return fail(400, "Bad Request: an initial PUBLISH needs a body"), nil
		case req.Expires == 0:
			return fail(400, "Bad Request: Expires 0 without SIP-If-Match"), nil
		}
		if u == nil {
			if len(a.users) >= a.cfg.lim.MaxPresentities {
				return fail(503, "Service Unavailable: too many presentities"), nil
			}
			u = a.user(req.Presentity)
		}
		if len(u.pubs) >= a.cfg.lim.MaxPubsPerPresentity {
			return fail(403, fmt.Sprintf("Forbidden: too many publications (at most %d)", a.cfg.lim.MaxPubsPerPresentity)), nil
		}
		p := &publication{doc: doc, at: now}
		return a.grant(now, u, p, req.Expires), a.changed(now, u, EventPresence)
	}
	var p *publication
	if u != nil {
		p = u.pubs[req.IfMatch]
	}
	if p == nil || !now.Before(p.expires) {
		return fail(412, "Conditional Request Failed"), nil
	}
	delete(u.pubs, p.etag)
	if req.Expires == 0 { // removal
		ns := a.changed(now, u, EventPresence)
		a.gc(u)
		return Result{Status: 200, Reason: "OK"}, ns
	}
	if doc != nil { // modification
		p.doc, p.at = doc, now
	}
	r := a.grant(now, u, p, req.Expires)
	var ns []Notify
	if doc != nil {
		ns = a.changed(now, u, EventPresence)
	}
	return r, ns
}

// grant stores p under a new entity tag with its expiry.
func (a *Agent) grant(now time.Time, u *presentity, p *publication, expires int) Result {
	d := a.expires(expires, a.cfg.lim.DefaultPublishExpires)
	p.etag, p.expires = a.etag(), now.Add(d)
	u.pubs[p.etag] = p
	return Result{Status: 200, Reason: "OK", Expires: int(d / time.Second), ETag: p.etag}
}

// expires returns the granted duration of a request's Expires (-1: absent).
func (a *Agent) expires(req int, def time.Duration) time.Duration {
	d := def
	if req >= 0 {
		d = time.Duration(req) * time.Second
	}
	return min(d, a.cfg.lim.MaxExpires)
}

func (a *Agent) etag() string {
	b := make([]byte, 12)
	if _, err := io.ReadFull(a.cfg.rand, b); err != nil {
		panic("presence: entity tag source failed: " + err.Error()) // crypto/rand does not fail
	}
	return hex.EncodeToString(b)
}

// sameEntity reports whether a PIDF entity (pres:, sip: or sips: URI)
// names the presentity AOR.
func sameEntity(entity, aor string) bool {
	strip := func(s string) string {
		s = strings.TrimSpace(s)
		for _, p := range []string{"pres:", "sips:", "sip:"} {
			if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
				s = s[len(p):]
				break
			}
		}
		user, host, _ := strings.Cut(s, "@")
		host, _, _ = strings.Cut(host, ";")
		return user + "@" + strings.ToLower(host)
	}
	return strip(entity) == strip(aor)
}

func (a *Agent) user(aor string) *presentity {
	u := a.users[aor]
	if u == nil {
		u = &presentity{aor: aor, pubs: map[string]*publication{}, subs: map[SubID]*subscription{}}
		a.users[aor] = u
	}
	return u
}

// gc forgets a presentity with no state left.
func (a *Agent) gc(u *presentity) {
	if len(u.pubs) == 0 && len(u.contacts) == 0 && len(u.subs) == 0 && u.newMsgs == 0 && u.oldMsgs == 0 {
		delete(a.users, u.aor)
	}
}

// SetRegistration gives the agent the registrar's contacts of presentity:
// the reg package's state, and the presence of a presentity that publishes
// nothing (open while a contact is active). Contacts that just ended are
// passed once with State "terminated" and the Event that ended them.
func (a *Agent) SetRegistration(now time.Time, presentity string, contacts []RegisteredContact) []Notify {
	u := a.users[presentity]
	if u == nil {
		if len(contacts) == 0 || len(a.users) >= a.cfg.lim.MaxPresentities {
			return nil
		}
		u = a.user(presentity)
	}
	if len(contacts) > maxRegContacts {
		contacts = contacts[:maxRegContacts]
	}
	u.contacts = slices.Clone(contacts)
	ns := append(a.changed(now, u, EventReg), a.changed(now, u, EventPresence)...)
	u.contacts = slices.DeleteFunc(u.contacts, func(c RegisteredContact) bool { return c.State == "terminated" })
	a.gc(u)
	return ns
}

// SetWaiting gives the agent the count of presentity's waiting messages
// (new and old), for the message-summary package.
func (a *Agent) SetWaiting(now time.Time, presentity string, newMsgs, oldMsgs uint32) []Notify {
	u := a.users[presentity]
	if u == nil {
		if newMsgs == 0 && oldMsgs == 0 || len(a.users) >= a.cfg.lim.MaxPresentities {
			return nil
		}
		u = a.user(presentity)
	}
	u.newMsgs, u.oldMsgs = newMsgs, oldMsgs
	ns := a.changed(now, u, EventMessageSummary)
	a.gc(u)
	return ns
}

// SubscribeRequest is a SUBSCRIBE (RFC 6665) as the agent needs it.
type SubscribeRequest struct {
	ID         SubID    // the dialog (LocalTag: the To tag the node answers with) and the event
	InDialog   bool     // the request had a To tag: a refresh or an unsubscription
	Watcher    string   // the authenticated From AOR
	Presentity string   // the Request-URI's AOR
	Accept     []string // the Accept header's media types (none: the package's default)
	Expires    int      // the Expires header, -1 if absent
}

// Subscribe handles a SUBSCRIBE: a new subscription, a refresh, an
// unsubscription (Expires 0) or a fetch (a new one with Expires 0). On
// success the NOTIFY the RFC requires at once is among the Notifies.
func (a *Agent) Subscribe(now time.Time, req SubscribeRequest) (Result, []Notify) {
	event := req.ID.Event
	ct, ok := contentTypes[event]
	if !ok {
		r := fail(489, "Bad Event")
		r.AllowEvent = strings.Join(slices.Sorted(maps.Keys(contentTypes)), ", ")
		return r, nil
	}
	if !accepts(req.Accept, ct) {
		r := fail(406, "Not Acceptable")
		r.Accept = ct
		return r, nil
	}
	if req.Expires > 0 && time.Duration(req.Expires)*time.Second < a.cfg.lim.MinExpires {
		r := fail(423, "Interval Too Brief")
		r.MinExpires = int(a.cfg.lim.MinExpires / time.Second)
		return r, nil
	}
	d := a.expires(req.Expires, defaultSubExpires[event])
	if s := a.subs[req.ID]; s != nil {
		if s.watcher != req.Watcher || s.presentity != req.Presentity {
			return fail(403, "Forbidden: another watcher's subscription"), nil
		}
		if d == 0 { // unsubscription
			return Result{Status: 200, Reason: "OK"}, []Notify{a.end(now, s, ReasonTimeout, true)}
		}
		s.expires = now.Add(d)
		return Result{Status: 200, Reason: "OK", Expires: int(d / time.Second)}, []Notify{a.notify(now, s)}
	}
	if req.InDialog {
		return fail(481, "Subscription Does Not Exist"), nil
	}
	if !a.cfg.exists(req.Presentity) {
		return fail(404, "Not Found"), nil
	}
	dec := a.cfg.authorize(req.Watcher, req.Presentity, event)
	if dec == Deny {
		return fail(403, "Forbidden"), nil
	}
	u := a.users[req.Presentity]
	switch {
	case len(a.subs) >= a.cfg.lim.MaxSubscriptions:
		return fail(503, "Service Unavailable: too many subscriptions"), nil
	case u == nil && len(a.users) >= a.cfg.lim.MaxPresentities:
		return fail(503, "Service Unavailable: too many presentities"), nil
	case u != nil && len(u.subs) >= a.cfg.lim.MaxSubsPerPresentity:
		return fail(403, fmt.Sprintf("Forbidden: too many watchers of %s (at most %d)", req.Presentity, a.cfg.lim.MaxSubsPerPresentity)), nil
	case a.watchers[req.Watcher] >= a.cfg.lim.MaxSubsPerWatcher:
		return fail(403, fmt.Sprintf("Forbidden: too many subscriptions of %s (at most %d)", req.Watcher, a.cfg.lim.MaxSubsPerWatcher)), nil
	}
	u = a.user(req.Presentity)
	s := &subscription{id: req.ID, watcher: req.Watcher, presentity: req.Presentity, pending: dec == Pending, expires: now.Add(d)}
	if d == 0 { // a fetch: one NOTIFY with the state, and done
		n := a.end(now, s, ReasonTimeout, !s.pending)
		a.gc(u)
		return Result{Status: 200, Reason: "OK"}, []Notify{n}
	}
	u.subs[s.id], a.subs[s.id] = s, s
	a.watchers[s.watcher]++
	return Result{Status: 200, Reason: "OK", Expires: int(d / time.Second)}, []Notify{a.notify(now, s)}
}

// accepts reports whether an Accept list takes media type ct.
func accepts(list []string, ct string) bool {
	if len(list) == 0 {
		return true
	}
	for _, v := range list {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if mt == ct || mt == "*/*" || mt == strings.SplitN(ct, "/", 2)[0]+"/*" {
				return true
			}
		}
	}
	return false
}

// Authorize changes a pending or active subscription after the user
// decided: Allow activates it (a NOTIFY with the state), Deny ends it
// (terminated;reason=rejected).
func (a *Agent) Authorize(now time.Time, id SubID, d Decision) []Notify {
	s := a.subs[id]
	if s == nil {
		return nil
	}
	switch d {
	case Deny:
		return []Notify{a.end(now, s, ReasonRejected, false)}
	case Allow:
		if s.pending {
			s.pending = false
			return []Notify{a.notify(now, s)}
		}
	}
	return nil
}

// NotifyResult reports the final response to a NOTIFY of subscription id:
// a 481, a timeout (408) or any other failure but 401/407 ends the
// subscription without another NOTIFY (RFC 6665 §4.2.2).
func (a *Agent) NotifyResult(id SubID, status int) {
	s := a.subs[id]
	if s == nil || status < 300 || status == 401 || status == 407 {
		return
	}
	a.drop(s)
}

// Tick expires publications and subscriptions and sends the NOTIFYs the
// throttle held back. Call it at NextDeadline.
func (a *Agent) Tick(now time.Time) []Notify {
	var ns []Notify
	for _, aor := range slices.Sorted(maps.Keys(a.users)) {
		u := a.users[aor]
		if u == nil {
			continue
		}
		lapsed := false
		for tag, p := range u.pubs {
			if !now.Before(p.expires) {
				delete(u.pubs, tag)
				lapsed = true
			}
		}
		if lapsed {
			ns = append(ns, a.changed(now, u, EventPresence)...)
		}
		for _, id := range sortedSubs(u.subs) {
			s := u.subs[id]
			switch {
			case !now.Before(s.expires):
				ns = append(ns, a.end(now, s, ReasonTimeout, true))
			case s.dirty && !now.Before(s.lastNotify.Add(a.cfg.lim.Throttle)):
				if n, ok := a.maybeNotify(now, s); ok {
					ns = append(ns, n)
				}
			}
		}
		a.gc(u)
	}
	return ns
}

// NextDeadline returns when Tick must next run (the zero time: nothing
// pending).
func (a *Agent) NextDeadline() time.Time {
	var t time.Time
	earlier := func(c time.Time) {
		if t.IsZero() || c.Before(t) {
			t = c
		}
	}
	for _, u := range a.users {
		for _, p := range u.pubs {
			earlier(p.expires)
		}
		for _, s := range u.subs {
			earlier(s.expires)
			if s.dirty {
				earlier(s.lastNotify.Add(a.cfg.lim.Throttle))
			}
		}
	}
	return t
}

// Terminate ends every subscription to presentity with reason (noresource:
// the user is gone; deactivated: its presence moved to another node).
func (a *Agent) Terminate(now time.Time, presentity, reason string) []Notify {
	u := a.users[presentity]
	if u == nil {
		return nil
	}
	var ns []Notify
	for _, id := range sortedSubs(u.subs) {
		ns = append(ns, a.end(now, u.subs[id], reason, false))
	}
	a.gc(u)
	return ns
}

// Shutdown ends every subscription with reason deactivated (the watcher
// subscribes again at once and reaches the user's next node).
func (a *Agent) Shutdown(now time.Time) []Notify {
	var ns []Notify
	for _, aor := range slices.Sorted(maps.Keys(a.users)) {
		ns = append(ns, a.Terminate(now, aor, ReasonDeactivated)...)
	}
	return ns
}

// Subscriptions returns how many subscriptions the agent holds.
func (a *Agent) Subscriptions() int { return len(a.subs) }

func sortedSubs(m map[SubID]*subscription) []SubID {
	ids := slices.Collect(maps.Keys(m))
	slices.SortFunc(ids, func(x, y SubID) int {
		return strings.Compare(x.CallID+"\x00"+x.RemoteTag+"\x00"+x.Event+"\x00"+x.EventID,
			y.CallID+"\x00"+y.RemoteTag+"\x00"+y.Event+"\x00"+y.EventID)
	})
	return ids
}

// changed notes a change of u's state for event: NOTIFYs now for
// subscriptions the throttle lets through, later for the others.
func (a *Agent) changed(now time.Time, u *presentity, event string) []Notify {
	var ns []Notify
	for _, id := range sortedSubs(u.subs) {
		s := u.subs[id]
		if s.id.Event != event || s.pending {
			continue
		}
		if !s.lastNotify.IsZero() && now.Before(s.lastNotify.Add(a.cfg.lim.Throttle)) {
			s.dirty = true
			continue
		}
		if n, ok := a.maybeNotify(now, s); ok {
			ns = append(ns, n)
		}
	}
	return ns
}

// maybeNotify returns a NOTIFY of s's state unless it is what s last got.
func (a *Agent) maybeNotify(now time.Time, s *subscription) (Notify, bool) {
	s.dirty = false
	if bytes.Equal(a.state(s), s.lastState) {
		return Notify{}, false
	}
	return a.notify(now, s), true
}

// notify returns a NOTIFY of s's current state.
func (a *Agent) notify(now time.Time, s *subscription) Notify {
	s.dirty, s.lastNotify = false, now
	left := max(1, int((s.expires.Sub(now)+time.Second-1)/time.Second))
	n := Notify{Sub: s.id, Watcher: s.watcher, Presentity: s.presentity}
	if s.pending {
		n.State = fmt.Sprintf("pending;expires=%d", left)
		return n
	}
	n.State = fmt.Sprintf("active;expires=%d", left)
	n.ContentType, n.Body = contentTypes[s.id.Event], a.body(now, s)
	s.lastState = a.state(s)
	return n
}

// end terminates s and returns its last NOTIFY, with the state when
// withState.
func (a *Agent) end(now time.Time, s *subscription, reason string, withState bool) Notify {
	n := Notify{Sub: s.id, Watcher: s.watcher, Presentity: s.presentity, State: "terminated;reason=" + reason}
	if withState && !s.pending {
		n.ContentType, n.Body = contentTypes[s.id.Event], a.body(now, s)
	}
	s.lastNotify = now
	a.drop(s)
	return n
}

func (a *Agent) drop(s *subscription) {
	if _, ok := a.subs[s.id]; !ok {
		return
	}
	delete(a.subs, s.id)
	if a.watchers[s.watcher]--; a.watchers[s.watcher] <= 0 {
		delete(a.watchers, s.watcher)
	}
	if u := a.users[s.presentity]; u != nil {
		delete(u.subs, s.id)
		a.gc(u)
	}
}

// state is s's state as a comparable value (the body; reginfo without
// its version and times).
func (a *Agent) state(s *subscription) []byte {
	if s.id.Event == EventReg {
		b, _ := a.regInfo(s.presentity, 0, time.Time{}).Marshal()
		return b
	}
	return a.body(time.Time{}, s)
}

// body renders s's state in its package's format at now.
func (a *Agent) body(now time.Time, s *subscription) []byte {
	switch s.id.Event {
	case EventPresence:
		b, _ := a.Document(s.presentity).Marshal()
		return b
	case EventReg:
		b, _ := a.regInfo(s.presentity, s.version, now).Marshal()
		s.version++
		return b
	case EventMessageSummary:
		var newMsgs, oldMsgs uint32
		if u := a.users[s.presentity]; u != nil {
			newMsgs, oldMsgs = u.newMsgs, u.oldMsgs
		}
		sum := Summary{Waiting: newMsgs > 0, Account: s.presentity,
			Counts: []ClassCount{{Class: TextMessage, New: newMsgs, Old: oldMsgs}}}
		return sum.Marshal()
	}
	return nil
}

// Document returns presentity's presence as watchers get it: the tuples
// and notes of every live publication, newest first (each device publishes
// its own tuples; a tuple ID used by two publications is kept once, the
// newest); without publications, one tuple per active registered contact
// (open, without its address) or a single closed tuple.
func (a *Agent) Document(presentity string) *Presence {
	doc := &Presence{Entity: "pres:" + strings.TrimPrefix(strings.TrimPrefix(presentity, "sips:"), "sip:")}
	u := a.users[presentity]
	if u != nil && len(u.pubs) > 0 {
		pubs := slices.Collect(maps.Values(u.pubs))
		slices.SortFunc(pubs, func(x, y *publication) int {
			if c := y.at.Compare(x.at); c != 0 {
				return c
			}
			return strings.Compare(x.etag, y.etag)
		})
		ids := map[string]bool{}
		for _, p := range pubs {
			for _, t := range p.doc.Tuples {
				if !ids[t.ID] && len(doc.Tuples) < maxTuples {
					ids[t.ID] = true
					doc.Tuples = append(doc.Tuples, t)
				}
			}
			for _, n := range p.doc.Notes {
				if !slices.Contains(doc.Notes, n) && len(doc.Notes) < maxNotes {
					doc.Notes = append(doc.Notes, n)
				}
			}
			doc.Extensions = append(doc.Extensions, p.doc.Extensions...)
		}
		return doc
	}
	if u != nil {
		for _, c := range u.contacts {
			if c.State == "terminated" {
				continue
			}
			doc.Tuples = append(doc.Tuples, Tuple{ID: "reg-" + shortHash(c.ID), Basic: Open})
		}
	}
	if len(doc.Tuples) == 0 {
		doc.Tuples = []Tuple{{ID: "reg", Basic: Closed}}
	}
	return doc
}

// regInfo renders presentity's registration as reginfo (full state), with
// the contacts' expires and duration-registered at now (none when now is
// zero).
func (a *Agent) regInfo(presentity string, version uint64, now time.Time) *RegInfo {
	reg := Registration{AOR: presentity, ID: "reg-" + shortHash(presentity), State: "init"}
	if u := a.users[presentity]; u != nil {
		for _, c := range u.contacts {
			rc := RegContact{ID: shortHash(c.ID), State: c.State, Event: c.Event, URI: c.URI, Q: c.Q, CallID: c.CallID, PubGRUU: c.PubGRUU}
			if rc.State == "" {
				rc.State = "active"
			}
			if rc.Event == "" {
				rc.Event = "registered"
			}
			if c.CSeq > 0 {
				v := uint64(c.CSeq)
				rc.CSeq = &v
			}
			if !now.IsZero() && rc.State == "active" && c.Expires.After(now) {
				v := uint64((c.Expires.Sub(now) + time.Second - 1) / time.Second)
				rc.Expires = &v
			}
			if !now.IsZero() && !c.Since.IsZero() && now.After(c.Since) {
				v := uint64(now.Sub(c.Since) / time.Second)
				rc.Duration = &v
			}
			if c.Instance != "" {
				rc.Params = append(rc.Params, Param{Name: "+sip.instance", Value: `"` + c.Instance + `"`})
			}
			if c.RegID > 0 {
				rc.Params = append(rc.Params, Param{Name: "reg-id", Value: fmt.Sprint(c.RegID)})
			}
			reg.Contacts = append(reg.Contacts, rc)
			if rc.State == "active" {
				reg.State = "active"
			}
		}
		if reg.State == "init" && len(u.contacts) > 0 {
			reg.State = "terminated"
		}
	}
	return &RegInfo{Version: version, State: "full", Registrations: []Registration{reg}}
}

func shortHash(s string) string {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return fmt.Sprintf("%016x", h)
}
