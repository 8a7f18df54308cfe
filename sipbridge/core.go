package sipbridge

import (
	"errors"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The proxy core (RFC 3261 §16): it serves each admitted request in its dialog's order.
// A request gets the proxy's own checks (420, 483, 482), 100 Trying for an INVITE, a
// routing decision (route.go) with the lookup it needs, the forwarding steps
// (forward.go), and a client transaction along the hop's path; then a relay, one
// goroutine per proxied transaction, passes the responses of the client transaction to
// the server transaction — sip.ClientTransaction to sip.ServerTransaction, whatever
// transports the two use. ACKs of 2xx answers are forwarded statelessly.

const allowHeader = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, PRACK, REFER, NOTIFY, SUBSCRIBE, REGISTER"

// serveRequest serves an admitted request: the last handler of the admission chain.
func (b *Bridge) serveRequest(in *inbound) {
	req := in.req
	ua := in.from.kind != tpP2P
	if ua && req.Method != sip.REGISTER {
		b.noteUA(req) // nat.go
	}
	switch {
	case req.IsAck():
		b.forwardAck(req, in.fromPeer())
	case req.Method == sip.REGISTER && ua:
		b.reg.onRegister(req, in.stx)
	default:
		b.proxy(req, in.stx, in.fromPeer())
	}
}

// relayCall is one proxied transaction: the request as received and its server
// transaction upstream, the copy sent and its client transaction downstream.
type relayCall struct {
	req  *sip.Request
	st   sip.ServerTransaction
	from peer.ID // the upstream peer ("" for a local UA)
	f    *forwarding
	ct   sip.ClientTransaction
	rr   bool          // this node record-routed the request
	canc chan struct{} // closed when upstream cancels
}

// proxy runs the synchronous part of proxying req (checks, routing, sending) and starts
// its relay; req was answered when it cannot go on.
func (b *Bridge) proxy(req *sip.Request, st sip.ServerTransaction, from peer.ID) {
	reply := func(code int, reason string, hdrs ...sip.Header) {
		b.observeCall(req, code)
		res := b.newResponse(req, code, reason)
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		if err := st.Respond(res); err != nil {
			b.log.Debug("respond failed", "err", err)
		}
	}
	if tags := proxyRequireTags(req); tags != "" {
		reply(420, "Bad Extension", sip.NewHeader("Unsupported", tags))
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		if req.Method == sip.OPTIONS && b.addressedToMe(req) {
			reply(200, "OK")
			return
		}
		reply(483, "Too Many Hops")
		return
	}
	if b.looped(req) {
		reply(482, "Loop Detected")
		return
	}
	b.callRequest(req) // calls.go: a BYE ends its call
	r := &relayCall{req: req, st: st, from: from, canc: make(chan struct{})}
	d := b.route(req, from, b.now())
	if req.IsInvite() {
		// 100 Trying stops a UA's retransmissions. A peer's stream retransmits nothing:
		// it gets a 100 only when the node has a lookup to make first, which may take
		// longer than 200 ms (RFC 3261 §17.2.1), as a proxy of draft Figure 3 (F4, F8)
		// answers while it looks the next domain up, or the callee's devices to fork to
		// (fork.go); a warm hop costs no message back.
		if from == "" || d.lookup != nil || d.fork != nil {
			if err := st.Respond(sip.NewResponseFromRequest(req, 100, "Trying", nil)); err != nil {
				b.log.Debug("100 Trying failed", "err", err)
			}
		}
		var once sync.Once
		if !st.OnCancel(func(*sip.Request) { once.Do(func() { close(r.canc) }) }) {
			reply(487, "Request Terminated") // cancelled while it waited for its turn
			return
		}
	}
	d = b.complete(b.ctx, req, d, from)
	if d.code == 0 && d.hop.self {
		if req.Method == sip.OPTIONS {
			reply(200, "OK", sip.NewHeader("Allow", allowHeader))
			return
		}
		d = answerWith(404, "Not Found: no user part in Request-URI")
	}
	if d.fork != nil && d.code == 0 {
		b.forkRequest(r, d, reply) // fork.go
		return
	}
	if d.presence != nil && d.code == 0 {
		b.servePresence(r, d, reply) // presence.go
		return
	}
	code, reason := d.code, d.reason
	if code == 0 {
		code, reason = b.sendRequest(r, d)
	}
	if code == 503 {
		reply(code, reason, sip.NewHeader("Retry-After", retryAfter))
		return
	}
	if code != 0 {
		reply(code, reason)
		return
	}
	if !b.spawn(func() { b.relay(r) }) {
		r.ct.Terminate()
		reply(503, "Service Unavailable: node shutting down")
	}
}

// sendRequest forwards r.req as decision d says, in a new client transaction (r.f, r.ct);
// a status other than 0 answers the request instead.
func (b *Bridge) sendRequest(r *relayCall, d decision) (int, string) {
	f := b.forward(r.req, d, r.from)
	if code, reason := b.mediaRequest(r.req, f.fwd, f.hop, r.from); code != 0 { // media.go
		return code, reason
	}
	p, err := b.pathTo(f.hop)
	var ct *clientTx
	if err == nil {
		ct, err = b.txl.request(p, f.fwd)
	}
	if err != nil {
		if next, ok := b.nextTarget(f.hop, err); ok { // outbound.go
			return b.sendRequest(r, next)
		}
		if f.hop.peer != "" {
			b.log.Debug("node unreachable", "peer", f.hop.peer, "err", err)
			return 480, "Temporarily Unavailable: serving node unreachable"
		}
		b.log.Debug("user agent unreachable", "uri", f.hop.uri.String(), "err", err)
		return 480, "Temporarily Unavailable: user agent unreachable"
	}
	r.f, r.ct, r.rr = f, ct, recordRoutes(r.req, f.hop, r.from)
	b.outboundSent(f.hop) // outbound.go
	return 0, ""
}

func (b *Bridge) addressedToMe(req *sip.Request) bool {
	return req.Recipient.User == "" && b.isMine(&req.Recipient)
}

// relay passes the responses of r.ct to r.st until the final one, and cancels downstream
// when upstream cancels (RFC 3261 §16.7, §16.10; Timer C, §16.8).
func (b *Bridge) relay(r *relayCall) {
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	defer func() { r.ct.Terminate() }()
	timeout := nonInviteTimeout
	if r.req.IsInvite() {
		timeout = inviteTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	cancelCh := (<-chan struct{})(r.canc)
	cancelled, answered, retried := false, false, false
	var lr linkRetry           // linkretry.go
	tryC := b.outboundTimer(r) // outbound.go: the next server when this one stays silent
	final := func(code int, reason string) {
		b.observeCall(r.req, code)
		if err := r.st.Respond(b.newResponse(r.req, code, reason)); err != nil {
			b.log.Debug("respond failed", "err", err)
		}
	}
	for {
		select {
		case res := <-r.ct.Responses():
			answered, tryC = true, nil
			if b.relayResponse(r, res) {
				return
			}
			if r.req.IsInvite() && !cancelled && res.StatusCode > 100 {
				timer.Reset(inviteTimeout)
			}
		case <-r.ct.Done():
			// Responses may be queued behind the termination.
			for drained := false; !drained; {
				select {
				case res := <-r.ct.Responses():
					answered = true
					if b.relayResponse(r, res) {
						return
					}
				default:
					drained = true
				}
			}
			err := r.ct.Err()
			if !answered && !cancelled && b.failover(r) {
				tryC = b.outboundTimer(r)
				continue
			}
			if !answered && !retried && !cancelled && errors.Is(err, ErrLinkDown) && r.f.hop.aor != "" {
				// The cached binding named a node that is gone: look the AOR up again.
				retried = true
				b.binds.forget(r.f.hop.aor)
				b.devs.forget(r.f.hop.aor)
				d := b.decide(b.ctx, r.req, r.from)
				if d.fork != nil && d.code == 0 {
					b.refork(r, d) // fork.go
					return
				}
				if d.code == 0 && !d.hop.self {
					if code, _ := b.sendRequest(r, d); code == 0 {
						continue
					}
				}
			}
			if !answered && !cancelled && errors.Is(err, ErrLinkDown) {
				sent, canc := b.resend(r, &lr, cancelCh) // linkretry.go
				if sent {
					continue
				}
				if canc {
					cancelCh, cancelled = nil, true
				}
			}
			switch {
			case cancelled:
				final(487, "Request Terminated")
			case errors.Is(err, ErrLinkDown):
				final(480, "Temporarily Unavailable: serving node unreachable")
			case errors.Is(err, ErrClosed):
				final(503, "Service Unavailable: node shutting down")
			case errors.Is(err, sip.ErrTransactionTimeout):
				final(408, "Request Timeout")
			default:
				final(480, "Temporarily Unavailable")
			}
			return
		case <-tryC:
			tryC = nil
			if !answered && !cancelled && b.failover(r) {
				tryC = b.outboundTimer(r)
			}
		case <-b.ctx.Done():
			final(503, "Service Unavailable: node shutting down")
			return
		case <-cancelCh:
			cancelCh = nil
			cancelled = true
			b.cancelDownstream(r)
			timer.Reset(cancelGrace)
		case <-timer.C:
			if cancelled {
				final(487, "Request Terminated")
				return
			}
			b.cancelDownstream(r)
			final(408, "Request Timeout")
			return
		}
	}
}

// relayResponse passes res upstream; true when it was the final one.
func (b *Bridge) relayResponse(r *relayCall, res *sip.Response) bool {
	if res.StatusCode == 100 {
		return false // hop by hop
	}
	fromUA, toPeer := r.f.hop.uri != nil, r.from != ""
	out := upResponse(res)                // forward.go
	out = b.outboundResponse(r, res, out) // outbound.go
	if fromUA && res.StatusCode < 300 && r.f.hop.ext == nil {
		b.natResponse(res, out) // nat.go
	}
	b.nodeHeaders(out, r.rr, toPeer)
	b.mediaResponse(r.req, res, out, fromUA, toPeer) // media.go
	b.callResponse(r.req, res)                       // calls.go
	if err := r.st.Respond(out); err != nil {
		b.log.Debug("relaying response failed", "status", res.StatusCode, "err", err)
		if r.req.IsInvite() && res.IsSuccess() {
			b.endCalleeLeg(r.req, r.f.hop, res) // orphans.go
		}
	}
	if res.StatusCode >= 200 {
		b.observeCall(r.req, res.StatusCode)
		return true
	}
	return false
}

// cancelDownstream sends the CANCEL of a forwarded INVITE along its hop's path; its
// answer is left to its client transaction.
func (b *Bridge) cancelDownstream(r *relayCall) {
	if !r.req.IsInvite() {
		return
	}
	c := cancelFor(r.f.fwd)
	p, err := b.pathTo(r.f.hop)
	if err == nil {
		_, err = b.txl.request(p, c)
	}
	if err != nil {
		b.log.Debug("cancel failed", "err", err)
	}
}

// forwardAck forwards an ACK statelessly (the ACK of a 2xx is a transaction of its own).
func (b *Bridge) forwardAck(req *sip.Request, from peer.ID) {
	if mf := req.MaxForwards(); (mf != nil && mf.Val() == 0) || b.looped(req) {
		b.log.Debug("dropping looped ACK")
		return
	}
	d := b.decide(b.ctx, req, from)
	if d.code != 0 || d.hop.self {
		b.log.Debug("dropping unroutable ACK", "status", d.code, "reason", d.reason)
		return
	}
	f := b.forward(req, d, from)
	b.mediaRequest(req, f.fwd, f.hop, from)
	p, err := b.pathTo(f.hop)
	if err == nil {
		aor := f.hop.aor
		err = b.send(p, f.fwd, func(err error) {
			if err != nil && aor != "" {
				b.binds.forget(aor)
			}
		})
	}
	if err != nil {
		if f.hop.aor != "" {
			b.binds.forget(f.hop.aor)
		}
		b.log.Debug("forwarding ACK failed", "err", err)
		return
	}
	b.log.Debug("ACK forwarded", "call", req.CallID().Value(), "to-peer", f.hop.peer)
}
