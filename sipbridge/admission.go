package sipbridge

import (
	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/domains"
)

// The admission chain. Every message a transport reads — from a UA over UDP or TCP, or
// from a peer over libp2p — goes through the same chain of links, each one job, in the
// shape of CoreDNS's plugins (plugin.Plugin, NextOrFailure; STYLE.md item 13): a link
// decides, counts, and either answers the message, drops it, or passes it to the next.
//
//	rate   the source's token buckets (buckets.go): 503 with Retry-After, or dropped
//	valid  what sipgo's parser lets through but RFC 3261 forbids: 400, 416, 505
//	trust  a node without users serves only UAs on trusted networks: 403 (relaypolicy.go)
//	tx     the transaction layer: retransmissions, CANCELs, the ACKs of non-2xx answers and
//	       responses end here; a new request gets its server transaction
//	bound  concurrent transactions per UA source, of all UAs, per peer: 503
//	digest out-of-dialog requests of UAs with WithUsers: 401, 403, 503 (digest.go)
//	order  the dialog's queue: requests of one Call-ID are served in arrival order
//
// and then the proxy core (core.go) or the registrar. Before the chain, the transports
// spend the source's raw budget on every datagram or frame and parse it once; caps on
// connections and streams (conncap.go) act before any message, and every log line of
// every link goes through the log guard (logguard.go).

// handler serves one inbound message.
type handler interface{ serve(in *inbound) }

type handlerFunc func(*inbound)

func (f handlerFunc) serve(in *inbound) { f(in) }

// plugin is one link of the admission chain (CoreDNS's plugin.Plugin): it wraps the rest
// of the chain.
type plugin func(next handler) handler

// chain builds plugins in order in front of final.
func chain(final handler, plugins ...plugin) handler {
	h := final
	for i := len(plugins) - 1; i >= 0; i-- {
		h = plugins[i](h)
	}
	return h
}

// admission is the bridge's chain.
func (b *Bridge) admission() handler {
	return chain(handlerFunc(b.serveRequest), b.rateLink, b.validLink, b.publicLink, b.trustLink, b.txLink, b.boundLink,
		b.digestLink, b.orderLink)
}

// receive is where the transports hand every parsed message.
func (b *Bridge) receive(in *inbound) { b.chain.serve(in) }

// ---- rate

func (b *Bridge) rateLink(next handler) handler {
	return handlerFunc(func(in *inbound) {
		l := b.lim
		t := l.ua
		if in.from.kind == tpP2P {
			if in.res != nil {
				next.serve(in) // a peer's responses spend only its raw budget
				return
			}
			t = l.peers
		}
		c := classDialog
		if in.req != nil {
			c = classify(in.req)
		}
		switch t.allow(in.key, c, in.at) {
		case admit:
			next.serve(in)
		case reject:
			if in.req == nil {
				l.stats.dropped.Add(1)
				return
			}
			l.stats.rateLimited.Add(1)
			b.respondTo(in, 503, "Service Unavailable: rate limit", sip.NewHeader("Retry-After", retryAfter))
		default:
			l.stats.dropped.Add(1)
		}
	})
}

// ---- valid

func (b *Bridge) validLink(next handler) handler {
	return handlerFunc(func(in *inbound) {
		req := in.req
		if req == nil {
			next.serve(in)
			return
		}
		if code, reason := validateRequest(req); code != 0 {
			if !req.IsAck() {
				res := sip.NewResponseFromRequest(req, code, reason, nil)
				res.SipVersion = "SIP/2.0" // not the request's: a 505 goes back in the version this node speaks
				if to := res.To(); to != nil && !hasTag(to) {
					to.Params.Add("tag", sip.GenerateTagN(16))
				}
				if err := b.send(in.from, res, nil); err != nil {
					b.log.Debug("rejecting malformed request failed", "err", err)
				}
			}
			b.log.Debug("rejected malformed request", "from", in.from.String(), "status", code, "reason", reason)
			return
		}
		normalizeParams(req) // malformed.go
		next.serve(in)
	})
}

// ---- trust

func (b *Bridge) trustLink(next handler) handler {
	return handlerFunc(func(in *inbound) {
		if in.req != nil && in.from.kind != tpP2P && !in.from.pub { // public.go: admitted by publicLink
			if res := b.refuseUntrusted(in.req); res != nil { // relaypolicy.go
				if !in.req.IsAck() {
					_ = b.send(in.from, res, nil)
				}
				return
			}
		}
		next.serve(in)
	})
}

// ---- tx

func (b *Bridge) txLink(next handler) handler {
	return handlerFunc(func(in *inbound) {
		if in.from.kind == tpP2P {
			b.learnNodes(in.msg()) // nodeheaders.go
		}
		if in.res != nil {
			if !b.txl.receiveResponse(in) {
				b.forwardStray(in) // stray.go
			}
			return
		}
		if b.txl.receiveRequest(in) {
			return
		}
		next.serve(in)
	})
}

// ---- bound

func (b *Bridge) boundLink(next handler) handler {
	return handlerFunc(func(in *inbound) {
		st := in.stx
		if st == nil { // an ACK: no transaction
			next.serve(in)
			return
		}
		l := b.lim
		if in.from.kind == tpP2P {
			p := string(in.from.peer)
			if why := b.peerTx.take(p); why != "" {
				l.stats.overloaded.Add(1)
				b.respondTx(in, 503, "Service Unavailable: too many transactions", sip.NewHeader("Retry-After", retryAfter))
				return
			}
			if !st.holdRelease(func() { b.peerTx.release(p) }) {
				return // ended meanwhile (the bridge closes)
			}
			next.serve(in)
			return
		}
		key := in.key
		if !l.ua.enter(key, l.cfg.MaxSourceTx, &l.uaTx, l.cfg.MaxUATx, in.at) {
			l.stats.overloaded.Add(1)
			b.respondTx(in, 503, "Service Unavailable: too many transactions", sip.NewHeader("Retry-After", retryAfter))
			return
		}
		if !st.holdRelease(func() { l.ua.leave(key, &l.uaTx) }) {
			return
		}
		next.serve(in)
	})
}

// ---- digest

func (b *Bridge) digestLink(next handler) handler {
	return handlerFunc(func(in *inbound) {
		req := in.req
		if b.cfg.users == nil || in.from.kind == tpP2P || in.from.pub || in.stx == nil || req.Method == sip.REGISTER || classify(req) != classInitial {
			next.serve(in)
			return
		}
		if res := b.authorizeUA(req, in.key); res != nil {
			if err := in.stx.respondAsync(res); err != nil {
				b.log.Debug("refusing request failed", "err", err)
			}
			return
		}
		next.serve(in)
	})
}

// authorizeUA checks the digest credentials of an out-of-dialog request from a local UA
// against its From user; nil when accepted, else the response to send. Known and unknown
// users get the same answers (401 with a fresh nonce without credentials, 403 with wrong
// ones), so that they cannot be told apart.
func (b *Bridge) authorizeUA(req *sip.Request, key string) *sip.Response {
	var aor domains.AOR
	if f := req.From(); f != nil {
		if a, err := domains.AORFromURI(&f.Address); err == nil {
			aor = a
		}
	}
	code, reason, chal := b.authorize(req, aor, key)
	if code == 0 && !aor.InDomain(b.domain) {
		code, reason = 403, "Forbidden"
	}
	if code == 0 {
		return nil
	}
	res := b.newResponse(req, code, reason)
	for _, h := range challengeHeaders(chal) { // digest.go
		res.AppendHeader(h)
	}
	if code == 503 {
		res.AppendHeader(sip.NewHeader("Retry-After", retryAfter))
	}
	return res
}

// ---- order

func (b *Bridge) orderLink(next handler) handler {
	return handlerFunc(func(in *inbound) {
		b.order.push(in.req.CallID().Value(), in)
	})
}

// ---- answers

// respondTo answers a request statelessly along the path it came (never an ACK).
func (b *Bridge) respondTo(in *inbound, code int, reason string, hdrs ...sip.Header) {
	if in.req == nil || in.req.IsAck() {
		return
	}
	res := b.newResponse(in.req, code, reason)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := b.send(in.from, res, nil); err != nil {
		b.log.Debug("answering failed", "status", code, "to", in.from.String(), "err", err)
	}
}

// respondTx answers a request through its server transaction.
func (b *Bridge) respondTx(in *inbound, code int, reason string, hdrs ...sip.Header) {
	res := b.newResponse(in.req, code, reason)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := in.stx.respondAsync(res); err != nil {
		b.log.Debug("answering failed", "status", code, "to", in.from.String(), "err", err)
	}
}

// newResponse builds a response to req, with a To tag on final responses.
func (b *Bridge) newResponse(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && code > 100 {
		if _, ok := to.Params.Get("tag"); !ok {
			to.Params.Add("tag", sip.GenerateTagN(16))
		}
	}
	return res
}
