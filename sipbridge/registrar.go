package sipbridge

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/push"
)

// registrar keeps the contacts of this node's local user agents and publishes them to the
// Locator; a contact that is not refreshed lapses, and the node republishes without it
// (a tombstone when none is left).
type registrar struct {
	b     *Bridge
	mu    sync.Mutex
	aors  map[string]*aorEntry
	store *regStore // nil: registrations are not kept across restarts
	// byAddr indexes the contacts by address (uriAddrKey): whether an address is one of the
	// node's user agents is asked for every in-dialog request, and must not cost a walk of
	// every registration (10,000 of them made that 80 % of a node's CPU).
	byAddr map[string][]*contactEntry
}

type aorEntry struct {
	aor      domains.AOR
	pub      sync.Mutex // serializes publishing of this AOR
	contacts []*contactEntry
}

type contactEntry struct {
	uri     sip.Uri
	key     string
	addr    string // uriAddrKey(&uri)
	expires time.Time
	callID  string
	cseq    uint32
	src     string // the address the REGISTER came from ("ip:port")
	tp      string // and over which transport ("udp", "tcp")
	nat     bool   // the UA is behind NAT: requests go to src (nat.go)
	// instance is the device's RFC 5626 +sip.instance ("<urn:uuid:…>", "" if none) and
	// regID its reg-id; since is when the contact first registered here (fork.go).
	instance string
	regID    int
	since    time.Time
	push     *push.Params // RFC 8599 push parameters (push.go), nil if none
}

func newRegistrar(b *Bridge) *registrar {
	return &registrar{b: b, aors: map[string]*aorEntry{}, byAddr: map[string][]*contactEntry{}}
}

// indexLocked adds c to the address index; r.mu is held.
func (r *registrar) indexLocked(c *contactEntry) {
	if c.addr != "" {
		r.byAddr[c.addr] = append(r.byAddr[c.addr], c)
	}
}

// unindexLocked removes c from the address index; r.mu is held.
func (r *registrar) unindexLocked(c *contactEntry) {
	l := r.byAddr[c.addr]
	for i, x := range l {
		if x == c {
			l[i] = l[len(l)-1]
			l[len(l)-1] = nil
			l = l[:len(l)-1]
			break
		}
	}
	if len(l) == 0 {
		delete(r.byAddr, c.addr)
	} else {
		r.byAddr[c.addr] = l
	}
}

// servesAddr reports whether u's host and port are those of a live contact
// registered at this node.
func (r *registrar) servesAddr(u *sip.Uri) bool {
	var buf [64]byte
	key := appendAddrKey(buf[:0], u)
	if len(key) == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.b.now()
	for _, c := range r.byAddr[string(key)] {
		if c.expires.After(now) {
			return true
		}
	}
	return false
}

func (r *registrar) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	b := r.b
	reply := func(res *sip.Response) {
		res.SetDestination(req.Source())
		if err := tx.Respond(res); err != nil {
			b.log.Debug("register respond failed", "err", err)
		}
	}
	fail := func(code int, reason string, hdrs ...sip.Header) {
		res := b.newResponse(req, code, reason)
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		reply(res)
	}
	if code, reason := validateRequest(req); code != 0 {
		fail(code, reason)
		return
	}
	aor, err := domains.AORFromURI(&req.To().Address)
	if err != nil {
		fail(400, "Bad Request: To is not a valid address-of-record")
		return
	}
	if !aor.InDomain(b.domain) {
		fail(403, "Forbidden: "+aor.String()+" is not in domain "+b.domain)
		return
	}
	if b.cfg.users != nil {
		if code, reason, chal := b.authorize(req, aor, sourceKey(req.Source())); code != 0 {
			switch {
			case chal != "":
				fail(code, reason, challengeHeaders(chal)...)
			case code == 503:
				fail(code, reason, sip.NewHeader("Retry-After", retryAfter))
			default:
				fail(code, reason)
			}
			return
		}
	}
	defExp := -1
	if v := rawValues(req, "expires"); len(v) == 1 {
		n, _ := strconv.Atoi(strings.TrimSpace(v[0]))
		defExp = n
	}
	type change struct {
		uri      sip.Uri
		expire   int
		instance string
		regID    int
		push     *push.Params // RFC 8599 (push.go)
	}
	var changes []change
	wildcard := false
	for _, h := range req.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			fail(400, "Bad Request: malformed Contact")
			return
		}
		if ch.Address.Wildcard || ch.Address.Host == "*" || strings.TrimSpace(ch.Value()) == "*" {
			wildcard = true
			continue
		}
		if b.isMineOver(&ch.Address) {
			fail(400, "Bad Request: Contact names this node (it would loop)")
			return
		}
		exp := defExp
		if v, ok := ch.Params.Get("expires"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				fail(400, "Bad Request: invalid expires parameter")
				return
			}
			exp = n
		}
		if exp < 0 {
			exp = int(b.cfg.defExp / time.Second)
		}
		inst, regID, ok := deviceParams(ch)
		if !ok {
			fail(400, "Bad Request: invalid +sip.instance or reg-id")
			return
		}
		var pp *push.Params
		if p, has, err := push.ParseContact(&ch.Address); err != nil {
			fail(400, "Bad Request: invalid push parameters (RFC 8599)")
			return
		} else if has {
			pp = &p
		}
		changes = append(changes, change{*ch.Address.Clone(), exp, inst, regID, pp})
	}
	if wildcard && (len(changes) > 0 || defExp != 0) {
		fail(400, "Bad Request: Contact * needs Expires: 0 and no other contact")
		return
	}
	if len(changes) > b.maxContacts() { // contactcap.go
		fail(403, b.tooManyContacts())
		return
	}
	adds, removes := map[string]bool{}, map[string]bool{}
	for _, c := range changes {
		if k := contactKey(&c.uri); c.expire > 0 {
			adds[k] = true
		} else {
			removes[k] = true
		}
	}
	minS, maxS := int(b.cfg.minExp/time.Second), int(b.cfg.maxExp/time.Second)
	for i, c := range changes {
		if c.expire > 0 && c.expire < minS {
			fail(423, "Interval Too Brief", sip.NewHeader("Min-Expires", strconv.Itoa(minS)))
			return
		}
		if c.expire > maxS {
			changes[i].expire = maxS
		}
	}
	callID, cseq := req.CallID().Value(), req.CSeq().SeqNo
	now := r.b.now()
	src, tp, viaNAT := req.Source(), strings.ToLower(req.Transport()), viaNATted(req)

	r.mu.Lock()
	e := r.aors[aor.String()]
	if e == nil {
		e = &aorEntry{aor: aor}
		r.aors[aor.String()] = e
	}
	if !wildcard && contactsAfter(e, adds, removes, now) > b.maxContacts() {
		r.mu.Unlock()
		fail(403, b.tooManyContacts())
		return
	}
	modified := wildcard || len(changes) > 0
	fresh := false     // a contact new at this node: messages waiting for the AOR go to it (mailbox.go)
	var gone []sip.Uri // contacts removed: their calls' media ends (media.go)
	if wildcard {
		for _, c := range e.contacts {
			gone = append(gone, c.uri)
			r.unindexLocked(c)
		}
		e.contacts = nil
	}
	for _, c := range changes {
		key := contactKey(&c.uri)
		idx := -1
		for i, old := range e.contacts {
			if old.key == key {
				idx = i
				break
			}
		}
		since := now
		if idx >= 0 {
			old := e.contacts[idx]
			if old.instance == c.instance {
				since = old.since
			}
			if old.callID == callID && cseq <= old.cseq {
				r.mu.Unlock()
				fail(500, "Server Internal Error: out of order REGISTER")
				return
			}
			e.contacts = append(e.contacts[:idx], e.contacts[idx+1:]...)
			r.unindexLocked(old)
			if c.expire == 0 {
				gone = append(gone, old.uri)
			}
		}
		if c.expire > 0 {
			fresh = fresh || idx < 0
			ce := &contactEntry{uri: c.uri, key: key, addr: uriAddrKey(&c.uri), expires: now.Add(time.Duration(c.expire) * time.Second), callID: callID, cseq: cseq,
				src: src, tp: tp, nat: flowTransport(tp) || viaNAT && !sameAddr(&c.uri, src, tp), instance: c.instance, regID: c.regID, since: since, push: c.push}
			e.contacts = append(e.contacts, ce)
			r.indexLocked(ce)
		}
	}
	r.mu.Unlock()
	b.mediaContactsGone(gone)

	if modified {
		r.changed()
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.locTimeout)
		err := r.publish(ctx, e)
		cancel()
		if errors.Is(err, ErrForbidden) {
			// The node may not register this AOR at all: keep nothing of it.
			r.mu.Lock()
			if cur := r.aors[aor.String()]; cur != nil {
				for _, c := range cur.contacts {
					r.unindexLocked(c)
				}
				delete(r.aors, aor.String())
			}
			r.mu.Unlock()
			r.changed()
			b.log.Info("registration refused", "aor", aor.String(), "err", err)
			fail(403, forbiddenReason(err))
			return
		}
		if err != nil {
			b.log.Warn("publishing binding failed", "aor", aor.String(), "err", err)
			fail(500, "Server Internal Error: location service failed")
			return
		}
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	if to := res.To(); to != nil && !hasTag(to) {
		to.Params.Add("tag", sip.GenerateTagN(16))
	}
	r.mu.Lock()
	b.listContacts(req, res, e, adds, b.now()) // contactcap.go
	r.mu.Unlock()
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	reply(res)
	var regd []*contactEntry
	r.mu.Lock()
	for _, c := range e.contacts {
		if adds[c.key] {
			regd = append(regd, c)
		}
	}
	r.mu.Unlock()
	b.pushRegistered(aor, regd) // push.go: a woken device registered
	if fresh {
		b.deliverWaiting(aor) // mailbox.go
	}
	if modified {
		b.presenceRegistration(aor) // presence.go
	}
}

func contactKey(u *sip.Uri) string {
	return strings.ToLower(u.Scheme) + ":" + u.User + "@" + strings.ToLower(u.Host) + ":" + strconv.Itoa(u.Port)
}

// publish stores the AOR's current live contacts (none: a tombstone) with the Locator.
func (r *registrar) publish(ctx context.Context, e *aorEntry) error {
	e.pub.Lock()
	defer e.pub.Unlock()
	r.mu.Lock()
	now := r.b.now()
	var cs []domains.Contact
	for _, c := range e.contacts {
		if c.expires.After(now) {
			cs = append(cs, domains.Contact{URI: c.uri.String(), Expires: c.expires, Instance: c.instance, Since: c.since})
		}
	}
	r.mu.Unlock()
	sort.Slice(cs, func(i, j int) bool { return cs[i].Expires.Before(cs[j].Expires) })
	if len(cs) > domains.MaxContacts {
		cs = cs[len(cs)-domains.MaxContacts:]
	}
	return r.b.loc.Register(ctx, e.aor, cs)
}

// run expires lapsed contacts until ctx ends.
func (r *registrar) run(ctx context.Context) {
	r.b.every(ctx, 250*time.Millisecond, func() { r.sweep(ctx) })
}

// sweep removes the contacts that lapsed, and withdraws them from the Locator.
func (r *registrar) sweep(ctx context.Context) {
	now := r.b.now()
	var lapsed []*aorEntry
	var gone []sip.Uri
	r.mu.Lock()
	for k, e := range r.aors {
		n := 0
		for _, c := range e.contacts {
			if c.expires.After(now) {
				e.contacts[n] = c
				n++
			} else {
				gone = append(gone, c.uri)
				r.unindexLocked(c)
			}
		}
		if n != len(e.contacts) {
			e.contacts = e.contacts[:n]
			lapsed = append(lapsed, e)
		}
		if n == 0 {
			delete(r.aors, k)
		}
	}
	r.mu.Unlock()
	if len(lapsed) > 0 {
		r.changed()
	}
	r.b.mediaContactsGone(gone)
	for _, e := range lapsed {
		r.b.presenceRegistration(e.aor) // presence.go
		pctx, cancel := context.WithTimeout(ctx, r.b.cfg.locTimeout)
		if err := r.publish(pctx, e); err != nil {
			r.b.log.Warn("withdrawing lapsed binding failed", "aor", e.aor.String(), "err", err)
		}
		cancel()
	}
}
