package sipbridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipdns"
)

// Outbound to ordinary SIP (RFC 3263). A request for a domain that is neither this node's
// nor in the global overlay (the inter-domain resolver says domains.ErrNotFound, which a
// proxy says for a domain the global overlay does not know) goes, at a node configured
// with WithOutbound, to that domain's own SIP servers: the sipdns resolver finds them
// (NAPTR, SRV, A/AAAA, its per-suffix policy first), the node sends to the first and fails
// over to the next when one does not answer at all within the try time or cannot be
// reached, and record-routes the dialog so that it stays in the path. Only the node's own
// user agents and, over the overlay, members of its domain (WithMembership) can make a
// request leave: a node without WithMembership sends out only for its own UAs. A node
// that is not a proxy hands such requests to its domain's proxy as before (the resolver
// names it), so only proxies go out.
//
// In-dialog requests of such a dialog follow its route set; the node sends them to an
// address outside only when that address is one it sent the dialog's INVITE to, or one a
// response from outside named in its Contact or Record-Route (a bounded set, as the
// addresses of local UAs are, uaaddrs.go), and only for its UAs and members: whoever else
// names such an address in a Route gets 403, so the node is no open relay towards the
// servers it talks to either.

// DefaultOutboundTry is how long an outbound request waits for any answer from one server
// before it goes to the next one the DNS named.
const DefaultOutboundTry = 3 * time.Second

// WithOutbound routes requests for domains outside the overlay to their SIP servers found
// by r (nil: such requests get 404, the default). The caller keeps r (and closes it).
// try bounds the wait for any answer from one server before failing over to the next
// (0: DefaultOutboundTry).
func WithOutbound(r *sipdns.Resolver, try time.Duration) Option {
	return func(c *config) error {
		if try < 0 {
			return fmt.Errorf("%w: outbound try time %v", ErrBadOption, try)
		}
		if try == 0 {
			try = DefaultOutboundTry
		}
		c.outbound, c.outboundTry = r, try
		return nil
	}
}

// outboundHop is what a hop outside the overlay carries: the targets left to fail over to.
type outboundHop struct {
	rest   []sipdns.Target
	pop    int    // Route entries of this node removed from the request
	domain string // the SIP domain a TLS server must prove (sipdns.Target.Domain)
}

// tlsName is the name a TLS connection for hop h verifies: the SIP domain of a server
// outside the overlay ("" otherwise: the address dialled).
func tlsName(h hop) string {
	if h.ext == nil {
		return ""
	}
	return h.ext.domain
}

// mayGoOut reports whether a request from from ("" a local UA) may leave the overlay.
func (b *Bridge) mayGoOut(from peer.ID) bool {
	if from == "" {
		return true
	}
	return b.cfg.member != nil && b.cfg.member(from)
}

// extAllowed reports whether u, named by an in-dialog request from from, is an address
// outside the overlay the node may send to (see above).
func (b *Bridge) extAllowed(u *sip.Uri, from peer.ID) bool {
	return (b.cfg.outbound != nil || b.pub != nil) && b.mayGoOut(from) && b.ext.has(u)
}

// outboundWanted reports whether a request whose inter-domain lookup gave (ai, err) goes
// to ordinary SIP instead.
func (b *Bridge) outboundWanted(ai peer.AddrInfo, err error) bool {
	return b.cfg.outbound != nil && (errors.Is(err, domains.ErrNotFound) || (err == nil && ai.ID == ""))
}

// outboundHop completes d, which asked for the next hop towards another domain, with the
// servers of that domain the DNS names.
func (b *Bridge) outboundHop(ctx context.Context, req *sip.Request, d decision, from peer.ID) decision {
	host := d.lookup.Host
	d.lookup, d.inter = nil, false
	if !b.mayGoOut(from) {
		return answerWith(403, "Forbidden: calls leave the overlay only for members of "+b.domain)
	}
	u := req.Recipient.Clone()
	targets, err := b.cfg.outbound.ResolveURI(ctx, u)
	if err != nil {
		code, reason := sipdns.StatusCode(err)
		b.log.Debug("outbound resolution failed", "domain", host, "status", code, "err", err)
		return answerWith(code, reason+": "+host)
	}
	usable := targets[:0:0]
	for _, t := range targets {
		if b.streamTPFor(t.Transport) {
			usable = append(usable, t)
		}
	}
	if len(usable) == 0 {
		return answerWith(503, "Service Unavailable: no server of "+host+" on a transport this node has")
	}
	t := usable[0]
	d.hop = hop{uri: u, dst: t.Addr.String(), dstTransport: t.Transport, ext: &outboundHop{rest: usable[1:], pop: d.pop, domain: t.Domain}}
	return d
}

// streamTPFor reports whether the node can send over transport ("udp", "tcp", "tls").
func (b *Bridge) streamTPFor(transport string) bool {
	switch k := kindOf(transport); k {
	case tpUDP:
		return b.udp != nil
	case tpTLS:
		t := b.sendTP(k)
		return t != nil && t.clientTLS != nil
	default:
		return b.sendTP(k) != nil
	}
}

// outboundSent notes where an outbound request went: in-dialog requests may go there.
func (b *Bridge) outboundSent(h hop) {
	if h.ext != nil {
		b.ext.noteAddr(h.dst)
	}
}

// outboundResponse notes the addresses a response from outside names (Contact, Record-
// Route): the dialog's requests go there.
func (b *Bridge) outboundResponse(r *relayCall, res, out *sip.Response) *sip.Response {
	if r.f.hop.ext == nil {
		return out
	}
	out = restoreOverlayVias(out)
	if res.StatusCode >= 300 {
		return out
	}
	b.ext.note(res)
	for _, h := range res.GetHeaders("Record-Route") {
		for _, v := range splitAddrList(h.Value()) {
			var u sip.Uri
			if _, err := sip.ParseAddressValue(v, &u, nil); err == nil && !u.UriParams.Has(nodeParam) {
				b.ext.noteAddr(uriAddrKey(&u))
			}
		}
	}
	return out
}

// outboundTimer returns the channel of the try time of r's hop: nil unless it is outside
// with servers left to fail over to.
func (b *Bridge) outboundTimer(r *relayCall) <-chan time.Time {
	if r.f == nil || r.f.hop.ext == nil || len(r.f.hop.ext.rest) == 0 {
		return nil
	}
	return time.After(b.cfg.outboundTry)
}

// failover sends r's request to the next server of its domain after the current one did
// not answer or could not be reached; false when none is left.
func (b *Bridge) failover(r *relayCall) bool {
	e := r.f.hop.ext
	if e == nil {
		return false
	}
	prev := r.f.hop.dst
	r.ct.Terminate()
	for len(e.rest) > 0 {
		t := e.rest[0]
		d := decision{pop: e.pop, hop: hop{uri: r.f.hop.uri, dst: t.Addr.String(), dstTransport: t.Transport,
			ext: &outboundHop{rest: e.rest[1:], pop: e.pop, domain: t.Domain}}}
		b.log.Info("outbound server did not answer, trying the next", "domain", r.f.hop.uri.Host, "failed", prev, "next", t.String())
		if code, _ := b.sendRequest(r, d); code == 0 {
			return true
		}
		e = d.hop.ext
	}
	return false
}

// outboundRoute is the decision for a request whose domain is outside the overlay at a
// node with no inter-domain resolver.
func (b *Bridge) outboundRoute(aor domains.AOR) (decision, bool) {
	if b.cfg.outbound == nil {
		return decision{}, false
	}
	return decision{lookup: &aor, inter: true}, true
}

// splitAddrList splits a header value of comma-separated name-addrs (commas inside <> or
// quotes do not count).
func splitAddrList(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(v[start:]))
}

// nextTarget is the decision for the next server after sending to hop h failed with err.
func (b *Bridge) nextTarget(h hop, err error) (decision, bool) {
	e := h.ext
	if e == nil || len(e.rest) == 0 {
		return decision{}, false
	}
	t := e.rest[0]
	b.log.Info("outbound server unreachable, trying the next", "domain", h.uri.Host, "failed", h.dst, "err", err, "next", t.String())
	return decision{pop: e.pop, hop: hop{uri: h.uri, dst: t.Addr.String(), dstTransport: t.Transport,
		ext: &outboundHop{rest: e.rest[1:], pop: e.pop, domain: t.Domain}}}, true
}

// Overlay Vias outside the overlay. A request that leaves the overlay carries the Vias of
// the nodes it crossed, "SIP/2.0/P2P <peer-id>": a legal transport token (RFC 3261 §25.1),
// but one that Kamailio, among others, refuses to parse. On the way out each becomes
// "SIP/2.0/TCP <peer-id>.invalid;hsv" (a name that resolves nowhere, RFC 2606) and on
// the way back, in the responses, it is restored: the nodes behind match their
// transactions by it.

const overlayViaParam = "hsv"

// hideOverlayVias returns fwd with its overlay Vias disguised (fwd itself when it has none).
func hideOverlayVias(fwd *sip.Request) *sip.Request {
	if !hasOverlayVia(fwd.Headers(), overlayTransport) {
		return fwd
	}
	out := sip.NewRequest(fwd.Method, fwd.Recipient)
	out.SipVersion = fwd.SipVersion
	copyWithVias(out, fwd, fwd.Headers(), func(v *sip.ViaHeader) *sip.ViaHeader {
		if v.Transport != overlayTransport {
			return nil
		}
		v = v.Clone()
		v.Transport, v.Host = "TCP", v.Host+".invalid"
		v.Params.Add(overlayViaParam, "")
		return v
	})
	return out
}

// copyWithVias gives out, a new message, the headers hs of from (a Via replaced by
// what conv returns for it, unless nil) and from's body, source and transport.
func copyWithVias(out, from sip.Message, hs []sip.Header, conv func(*sip.ViaHeader) *sip.ViaHeader) {
	for _, h := range hs {
		if v, ok := h.(*sip.ViaHeader); ok {
			if nv := conv(v); nv != nil {
				h = nv
			}
		}
		out.AppendHeader(h)
	}
	out.SetBody(from.Body())
	out.SetSource(from.Source())
	out.SetTransport(from.Transport())
}

// restoreOverlayVias returns res with the overlay Vias hideOverlayVias disguised restored.
func restoreOverlayVias(res *sip.Response) *sip.Response {
	if !hasOverlayVia(res.Headers(), "") {
		return res
	}
	out := sip.NewResponse(res.StatusCode, res.Reason)
	out.SipVersion = res.SipVersion
	copyWithVias(out, res, res.Headers(), func(v *sip.ViaHeader) *sip.ViaHeader {
		if !v.Params.Has(overlayViaParam) {
			return nil
		}
		v = v.Clone()
		v.Transport, v.Host = overlayTransport, strings.TrimSuffix(v.Host, ".invalid")
		v.Params.Remove(overlayViaParam)
		return v
	})
	return out
}

// hasOverlayVia reports whether hs hold a Via of transport tp ("": a disguised one).
func hasOverlayVia(hs []sip.Header, tp string) bool {
	for _, h := range hs {
		if v, ok := h.(*sip.ViaHeader); ok {
			if tp != "" && v.Transport == tp || tp == "" && v.Params.Has(overlayViaParam) {
				return true
			}
		}
	}
	return false
}

// outPublic reports whether a request for hop h over transport tp leaves from the public
// socket (public.go): a server outside the overlay reached over UDP by a node that has
// one — the address that server can reach back, where its answers and the dialog's
// requests then arrive.
func (b *Bridge) outPublic(h hop, tp string) bool {
	return h.ext != nil && b.pub != nil && kindOf(tp) == tpUDP
}
