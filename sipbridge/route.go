package sipbridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/domains"
)

// Routing decides purely, and acts outside (STYLE.md item 17, as raft's rawnode). route is
// a function of the request and the node's tables — its addresses, its registrations and
// the local UAs' addresses, the cache of bindings, the membership — that does no I/O and
// changes nothing. It returns a decision: a hop, a status to answer, or a lookup to make
// first (the domain's location service, or the inter-domain resolver). The caller
// (core.go) makes the lookup and completes the decision with the pure bindingHop or
// interDomainHop; it logs and counts refusals, forwards, and answers.

// hop is the next hop of a request: another node, or a SIP URI reached over UDP/TCP.
type hop struct {
	peer  peer.ID
	addrs []ma.Multiaddr
	uri   *sip.Uri
	self  bool   // the request is addressed to this node itself
	aor   string // the AOR whose cached binding chose peer ("" when not from the cache)
	// dst, when set, is where a request for uri goes instead of uri's address: the
	// source of the UA's registration, behind NAT (nat.go), over dstTransport.
	dst, dstTransport string
	ext               *outboundHop // a server outside the overlay (outbound.go)
}

// decision is what route decides for a request.
type decision struct {
	hop    hop
	code   int    // a status to answer instead (0: forward to hop)
	reason string // its reason phrase
	pop    int    // Route entries naming this node, to remove from the forwarded copy
	ruri   *sip.Uri
	// lookup, when set, is the AOR to look up before the request can go on: in the
	// domain (Locator.Lookup), or, with inter, the next hop towards its domain.
	lookup *domains.AOR
	inter  bool
	// refused, with code 403, says which address the relay policy refused (logged and
	// counted by the caller, relaypolicy.go).
	refused string
	// fork, when set, is the AOR of this domain whose devices the request is forked to
	// (fork.go), gruu the gr parameter of its Request-URI.
	fork *domains.AOR
	gruu string
	// presence, when set, is the AOR of this domain whose presence agent serves the
	// request (a PUBLISH or SUBSCRIBE, presence.go).
	presence *domains.AOR
}

func (d decision) answer() bool { return d.code != 0 }

func answerWith(code int, reason string) decision { return decision{code: code, reason: reason} }

// route decides where req, from a local UA (from == "") or from peer from, goes next.
func (b *Bridge) route(req *sip.Request, from peer.ID, now time.Time) decision {
	var d decision
	// Loose routing: skip this node's own entries, then follow the next one.
	var next *sip.RouteHeader
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), "Route") {
			continue
		}
		r, ok := h.(*sip.RouteHeader)
		if !ok {
			return answerWith(400, "Bad Request: malformed Route")
		}
		if next == nil && b.isMine(&r.Address) {
			d.pop++
			continue
		}
		next = r
		break
	}
	if next != nil {
		r := next
		if id, ok := r.Address.UriParams.Get(nodeParam); ok {
			p, err := peer.Decode(id)
			if err != nil {
				return answerWith(400, "Bad Request: invalid node ID in Route")
			}
			if b.relayDenied(from, p) {
				return answerWith(403, b.relayDeniedReason())
			}
			d.hop = hop{peer: p}
			return d
		}
		u := r.Address.Clone()
		d.hop = hop{uri: u}
		if !b.localUA(u) {
			if !b.extAllowed(u, from) {
				return refusal(u)
			}
			d.hop.ext = &outboundHop{} // outbound.go
		}
		return d
	}
	u := &req.Recipient
	if b.isMine(u) {
		if u.User == "" {
			d.hop = hop{self: true}
			return d
		}
		// A UA that addressed the node itself (e.g. sip:bob@127.0.0.1:5060) means a user of this domain.
		d.ruri = &sip.Uri{Scheme: "sip", User: u.User, Host: b.domain}
		u = d.ruri
	}
	if u.User == "" || u.Port != 0 || net.ParseIP(strings.Trim(u.Host, "[]")) != nil || invalidHost(u.Host) {
		// A contact address (the last hop of an in-dialog request, or a UA's explicit target).
		uc := u.Clone()
		if !b.localUA(uc) {
			if !b.extAllowed(uc, from) {
				return refusal(uc)
			}
			d.hop = hop{uri: uc, ext: &outboundHop{}} // outbound.go
			return d
		}
		d.hop = hop{uri: uc}
		d.hop.dst, d.hop.dstTransport = b.reg.natDest(uc)
		return d
	}
	aor, err := domains.AORFromURI(u)
	if err != nil {
		if errors.Is(err, domains.ErrScheme) {
			return answerWith(416, "Unsupported URI Scheme")
		}
		return answerWith(400, "Bad Request: invalid Request-URI")
	}
	if !aor.InDomain(b.domain) {
		if b.relayDenied(from, "") {
			return answerWith(403, b.relayDeniedReason())
		}
		if d, ok := b.outboundRoute(aor); ok && b.cfg.interDomain == nil {
			return d // outbound.go
		}
		if b.cfg.interDomain == nil {
			return answerWith(404, fmt.Sprintf("Not Found: no route to domain of %s (this node serves %s)", aor.Host, b.domain))
		}
		d.lookup, d.inter = &aor, true
		return d
	}
	if b.presenceRequest(req) { // presence.go
		d.presence = &aor
		return d
	}
	if b.forks(req) { // fork.go
		d.fork = &aor
		d.gruu, _ = u.UriParams.Get("gr")
		return d
	}
	if t, ok := b.reg.target(aor); ok {
		d.ruri = t.uri.Clone()
		d.hop = hop{uri: &t.uri, dst: t.dst, dstTransport: t.tp}
		return d
	}
	key := aor.String()
	if e, ok := b.binds.get(key, now); ok {
		d.hop = hop{peer: e.peer, addrs: e.addrs, aor: key}
		return d
	}
	d.lookup = &aor
	return d
}

func refusal(u *sip.Uri) decision {
	return decision{code: 403, reason: notLocalUAReason, refused: uriAddrKey(u)}
}

// bindingHop completes d, which asked for a lookup in the domain, with its result.
func (b *Bridge) bindingHop(d decision, bind *domains.Binding, err error, now time.Time) decision {
	aor := d.lookup.String()
	d.lookup = nil
	switch {
	case errors.Is(err, domains.ErrNotFound):
		return answerWith(404, "Not Found: "+aor+" is not registered")
	case err != nil:
		return answerWith(480, "Temporarily Unavailable: lookup failed")
	case bind == nil || !bind.Live(now) || len(bind.Contacts) == 0:
		return answerWith(404, "Not Found: "+aor+" is not registered")
	case bind.Peer == b.self:
		return answerWith(480, "Temporarily Unavailable: registration lapsed")
	}
	d.hop = hop{peer: bind.Peer, addrs: bind.Addrs}
	return d
}

// interDomainHop completes d, which asked for the next hop towards another domain.
func (b *Bridge) interDomainHop(d decision, ai peer.AddrInfo, err error) decision {
	host := d.lookup.Host
	d.lookup, d.inter = nil, false
	switch {
	case errors.Is(err, domains.ErrNotFound) || (err == nil && ai.ID == ""):
		return answerWith(404, "Not Found: no proxy for domain of "+host)
	case errors.Is(err, ErrUnavailable):
		return answerWith(503, "Service Unavailable: no proxy reachable for "+host)
	case err != nil:
		return answerWith(480, "Temporarily Unavailable: inter-domain route failed")
	case ai.ID == b.self:
		return answerWith(482, "Loop Detected: inter-domain route points to this node")
	}
	d.hop = hop{peer: ai.ID, addrs: ai.Addrs}
	return d
}

// decide routes req: route, then the lookup it asks for (I/O, bounded by the locator
// timeout), then the logging of a refusal.
func (b *Bridge) decide(ctx context.Context, req *sip.Request, from peer.ID) decision {
	return b.complete(ctx, req, b.route(req, from, b.now()), from)
}

// complete makes the lookup d, route's decision for req, asks for (if any): in the
// overlay, or outside it by DNS (outbound.go); and logs a refusal.
func (b *Bridge) complete(ctx context.Context, req *sip.Request, d decision, from peer.ID) decision {
	if d.lookup != nil {
		lctx, cancel := context.WithTimeout(ctx, b.cfg.locTimeout)
		if d.inter {
			var ai peer.AddrInfo
			err := fmt.Errorf("%w: no inter-domain route", domains.ErrNotFound)
			if b.cfg.interDomain != nil {
				ai, err = b.cfg.interDomain(lctx, *d.lookup)
			}
			if b.outboundWanted(ai, err) {
				d = b.outboundHop(lctx, req, d, from) // outbound.go
			} else {
				d = b.interDomainHop(d, ai, err)
			}
		} else {
			aor := *d.lookup
			bind, err := b.loc.Lookup(lctx, aor)
			if err != nil && !errors.Is(err, domains.ErrNotFound) {
				b.log.Warn("lookup failed", "aor", aor.String(), "err", err)
			}
			now := b.now()
			d = b.bindingHop(d, bind, err, now)
			if !d.answer() {
				b.binds.put(aor.String(), bind, now)
			}
		}
		cancel()
	}
	if d.refused != "" {
		b.relayRefused(d.refused, from) // relaypolicy.go
	}
	return d
}
