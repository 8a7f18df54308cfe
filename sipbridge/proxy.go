package sipbridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/domains"
)

// upstream is the server side of a proxied transaction: where responses go.
type upstream interface {
	respond(res *sip.Response) error
	cancelled() <-chan struct{}
}

// downstream is the client side of a proxied transaction.
type downstream interface {
	responses() <-chan *sip.Response
	done() <-chan struct{}
	err() error
	cancel()
	close()
}

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
}

// ---- upstreams

type uaUpstream struct {
	src    string // where the request came from: responses go there (symmetric, NAT-friendly)
	udp    net.PacketConn
	tx     sip.ServerTransaction
	cancel chan struct{}
	once   sync.Once
}

func (u *uaUpstream) respond(res *sip.Response) error {
	if u.src != "" {
		res.SetDestination(u.src)
	}
	err := u.tx.Respond(res)
	if errors.Is(err, sip.ErrUDPMTUCongestion) && u.udp != nil && u.src != "" {
		// sipgo refuses UDP messages over 1300 bytes; a response must still go back the
		// way the request came (RFC 3261 §18.2.2), and IP fragments it.
		addr, rerr := net.ResolveUDPAddr("udp", u.src)
		if rerr != nil {
			return err
		}
		_, err = u.udp.WriteTo([]byte(res.String()), addr)
	}
	return err
}
func (u *uaUpstream) cancelled() <-chan struct{} { return u.cancel }

type peerUpstream struct {
	b  *Bridge
	st *p2pServerTx
}

func (u *peerUpstream) respond(res *sip.Response) error {
	err := u.b.links.send(u.b.ctx, u.st.peer, nil, res)
	if res.StatusCode >= 200 {
		u.b.txs.removeServer(u.st)
	}
	return err
}
func (u *peerUpstream) cancelled() <-chan struct{} { return u.st.cancel }

// ---- downstreams

type uaDownstream struct {
	b   *Bridge
	tx  sip.ClientTransaction
	req *sip.Request // as sent, with our Via on top
}

func (d *uaDownstream) responses() <-chan *sip.Response { return d.tx.Responses() }
func (d *uaDownstream) done() <-chan struct{}           { return d.tx.Done() }
func (d *uaDownstream) err() error                      { return d.tx.Err() }
func (d *uaDownstream) close()                          { d.tx.Terminate() }
func (d *uaDownstream) cancel() {
	if !d.req.IsInvite() {
		return
	}
	c := cancelFor(d.req)
	c.SetTransport(d.req.Transport())
	c.SetDestination(d.req.Destination())
	go func() {
		ctx, cancel := context.WithTimeout(d.b.ctx, nonInviteTimeout)
		defer cancel()
		tx, err := d.b.cli.TransactionRequest(ctx, c, func(*sipgo.Client, *sip.Request) error { return nil })
		if err != nil {
			d.b.log.Debug("cancel to UA failed", "err", err)
			return
		}
		defer tx.Terminate()
		for {
			select {
			case r := <-tx.Responses():
				if r.StatusCode >= 200 {
					return
				}
			case <-tx.Done():
				return
			case <-ctx.Done():
				return
			}
		}
	}()
}

type peerDownstream struct {
	b   *Bridge
	tx  *p2pClientTx
	req *sip.Request
}

func (d *peerDownstream) responses() <-chan *sip.Response { return d.tx.resp }
func (d *peerDownstream) done() <-chan struct{}           { return d.tx.done }
func (d *peerDownstream) err() error                      { return d.tx.err }
func (d *peerDownstream) close()                          { d.b.txs.removeClient(d.tx) }
func (d *peerDownstream) cancel() {
	if !d.req.IsInvite() {
		return
	}
	c := cancelFor(d.req)
	go func() {
		if err := d.b.links.send(d.b.ctx, d.tx.peer, nil, c); err != nil {
			d.b.log.Debug("cancel to node failed", "peer", d.tx.peer, "err", err)
		}
	}()
}

// cancelFor builds the CANCEL of a forwarded INVITE (RFC 3261 §9.1): same Request-URI,
// top Via, From, To, Call-ID, CSeq number and Route set.
func cancelFor(inv *sip.Request) *sip.Request {
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	c.AppendHeader(sip.HeaderClone(inv.Via()))
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	for _, h := range inv.GetHeaders("Route") {
		c.AppendHeader(sip.HeaderClone(h))
	}
	c.SetBody(nil)
	return c
}

// ---- entry points

// arrivalKey identifies a request for ordering: Call-ID (the queue) and method, CSeq, branch.
func arrivalKey(req *sip.Request) (callID, id string, ok bool) {
	if req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		return "", "", false
	}
	br, _ := req.Via().Params.Get("branch")
	return req.CallID().Value(), string(req.Method) + " " + strconv.FormatUint(uint64(req.CSeq().SeqNo), 10) + " " + br, true
}

// onArrival runs in the UDP reader, in arrival order, for every valid request from a local
// UA: requests that will reach onUARequest reserve their place in their dialog's queue.
func (b *Bridge) onArrival(req *sip.Request) {
	if req.Method == sip.REGISTER || req.IsCancel() {
		return
	}
	callID, id, ok := arrivalKey(req)
	if !ok {
		return
	}
	if req.IsAck() {
		// The ACK of a non-2xx answer shares the INVITE's branch and CSeq number; sipgo's
		// transaction layer absorbs it, so it must not reserve a place.
		inv := string(sip.INVITE) + strings.TrimPrefix(id, string(sip.ACK))
		if b.queue.known(callID, inv) {
			return
		}
	}
	b.queue.reserve(callID, id)
}

// onUARequest handles every non-REGISTER request from a local user agent. Routing and
// sending run in the dialog's queue, in arrival order; the handler then waits for the
// transaction to end, since sipgo terminates the server transaction when it returns.
func (b *Bridge) onUARequest(req *sip.Request, tx sip.ServerTransaction) {
	b.noteUA(req)
	callID, id, ok := arrivalKey(req)
	if !ok {
		if tx != nil {
			_ = tx.Respond(b.newResponse(req, 400, "Bad Request"))
		}
		return
	}
	if req.IsAck() {
		b.queue.run(callID, id, func() { b.forwardAck(req, "") })
		return
	}
	if tx == nil {
		b.queue.run(callID, id, func() {})
		return
	}
	up := &uaUpstream{src: req.Source(), tx: tx, cancel: make(chan struct{})}
	if strings.EqualFold(req.Transport(), "udp") {
		up.udp = b.udp
	}
	if req.IsCancel() { // a matched CANCEL is absorbed by the transaction layer
		_ = up.respond(b.newResponse(req, 481, "Call/Transaction Does Not Exist"))
		return
	}
	if req.IsInvite() {
		tx.OnCancel(func(*sip.Request) { up.once.Do(func() { close(up.cancel) }) })
	}
	done := make(chan struct{})
	b.queue.run(callID, id, func() {
		relay := b.start(b.ctx, req, up, "")
		if relay == nil || !b.spawn(func() { defer close(done); relay() }) {
			close(done)
		}
	})
	select {
	case <-done:
	case <-b.ctx.Done():
	}
}

// onPeerRequest handles a request read from a libp2p stream of peer p.
func (b *Bridge) onPeerRequest(p peer.ID, req *sip.Request) {
	b.learnNodes(req)
	via := req.Via()
	branch := ""
	if via != nil {
		branch, _ = via.Params.Get("branch")
	}
	if via == nil || req.CallID() == nil || req.CSeq() == nil || branch == "" {
		if !req.IsAck() {
			b.replyPeer(p, req, 400, "Bad Request: missing Via branch, Call-ID or CSeq")
		}
		return
	}
	callID := req.CallID().Value()
	switch {
	case req.IsAck():
		b.queue.do(callID, func() { b.forwardAck(req, p) })
		return
	case req.IsCancel():
		st := b.txs.findServer(serverKey(p, branch, sip.INVITE))
		if st == nil {
			b.replyPeer(p, req, 481, "Call/Transaction Does Not Exist")
			return
		}
		b.replyPeer(p, req, 200, "OK")
		st.signalCancel()
		return
	}
	st, over := b.txs.addServer(serverKey(p, branch, req.Method), p, b.cfg.maxTxPerPeer)
	if over {
		res := b.newResponse(req, 503, "Service Unavailable: too many transactions")
		res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		_ = b.links.send(b.ctx, p, nil, res)
		return
	}
	if st == nil {
		return // retransmission or closing
	}
	up := &peerUpstream{b: b, st: st}
	b.queue.do(callID, func() {
		if relay := b.start(b.ctx, req, up, p); relay != nil {
			if !b.spawn(relay) {
				_ = up.respond(b.newResponse(req, 503, "Service Unavailable: node shutting down"))
			}
		}
	})
}

// onPeerResponse hands a response from peer p to its client transaction.
func (b *Bridge) onPeerResponse(p peer.ID, res *sip.Response) {
	b.learnNodes(res)
	via, cseq := res.Via(), res.CSeq()
	if via == nil || cseq == nil || via.Host != b.selfStr {
		b.log.Debug("dropping response not for us", "peer", p)
		return
	}
	branch, _ := via.Params.Get("branch")
	if !b.txs.deliver(clientKey(branch, cseq.MethodName), p, res) {
		b.forwardStray(res)
	}
}

// forwardStray forwards a response that matches no transaction (a retransmitted 2xx to an
// INVITE whose transaction ended) statelessly along its Via path, RFC 3261 §16.7; others are dropped.
func (b *Bridge) forwardStray(res *sip.Response) {
	cseq := res.CSeq()
	if cseq == nil || cseq.MethodName != sip.INVITE || !res.IsSuccess() {
		b.log.Debug("dropping unmatched response", "status", res.StatusCode)
		return
	}
	vias := res.GetHeaders("Via")
	if len(vias) < 2 {
		return
	}
	if top, ok := vias[0].(*sip.ViaHeader); !ok || !b.isMyVia(top) {
		return
	}
	next, ok := vias[1].(*sip.ViaHeader)
	if !ok {
		return
	}
	out := upResponse(res)
	b.mediaStray(res, out, next.Transport == overlayTransport)
	if next.Transport == overlayTransport {
		p, err := peer.Decode(next.Host)
		if err != nil {
			return
		}
		if err := b.links.send(b.ctx, p, nil, out); err != nil {
			b.log.Debug("forwarding 2xx retransmission failed", "err", err)
		}
		return
	}
	if err := b.ua.TransportLayer().WriteMsg(out); err != nil {
		b.log.Debug("forwarding 2xx retransmission failed", "err", err)
	}
}

func (b *Bridge) replyPeer(p peer.ID, req *sip.Request, code int, reason string) {
	if err := b.links.send(b.ctx, p, nil, b.newResponse(req, code, reason)); err != nil {
		b.log.Debug("reply to node failed", "peer", p, "err", err)
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

// ---- the proxy

// start runs the synchronous part of proxying req (validation, routing, sending) and returns
// the function that relays responses back, or nil when req was answered already.
// from is the peer the request came from, "" for a local UA. req is never modified.
func (b *Bridge) start(ctx context.Context, req *sip.Request, up upstream, from peer.ID) func() {
	reply := func(code int, reason string, hdrs ...sip.Header) func() {
		b.observeCall(req, code)
		res := b.newResponse(req, code, reason)
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		if err := up.respond(res); err != nil {
			b.log.Debug("respond failed", "err", err)
		}
		return nil
	}
	if code, reason := validateRequest(req); code != 0 {
		return reply(code, reason)
	}
	if tags := proxyRequireTags(req); tags != "" {
		return reply(420, "Bad Extension", sip.NewHeader("Unsupported", tags))
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		if req.Method == sip.OPTIONS && b.addressedToMe(req) {
			return reply(200, "OK")
		}
		return reply(483, "Too Many Hops")
	}
	if b.looped(req) {
		return reply(482, "Loop Detected")
	}
	if req.IsInvite() {
		if err := up.respond(sip.NewResponseFromRequest(req, 100, "Trying", nil)); err != nil {
			b.log.Debug("100 Trying failed", "err", err)
		}
	}
	fwd, h, code, reason := b.route(ctx, req, from)
	if code == 503 {
		return reply(code, reason, sip.NewHeader("Retry-After", retryAfter))
	}
	if code != 0 {
		return reply(code, reason)
	}
	if h.self {
		if req.Method == sip.OPTIONS {
			return reply(200, "OK", sip.NewHeader("Allow", allowHeader))
		}
		return reply(404, "Not Found: no user part in Request-URI")
	}
	down, code, reason := b.send(ctx, req, fwd, h, from)
	if code != 0 && h.aor != "" {
		// The cached binding named a node that is gone: look the AOR up again.
		b.binds.forget(h.aor)
		if fwd, h, code, reason = b.route(ctx, req, from); code == 0 && !h.self {
			down, code, reason = b.send(ctx, req, fwd, h, from)
		}
	}
	if code == 0 && h.self {
		code, reason = 404, "Not Found: no user part in Request-URI"
	}
	if code != 0 {
		return reply(code, reason)
	}
	rr := recordRoutes(req, h, from)
	return func() { b.relay(req, up, down, rr, from != "") }
}

const allowHeader = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, PRACK, REFER, NOTIFY, SUBSCRIBE, REGISTER"

// relay passes the responses of down to up. rr: this node record-routed req; toPeer: up is
// another node (else a local UA).
func (b *Bridge) relay(req *sip.Request, up upstream, down downstream, rr, toPeer bool) {
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	defer down.close()
	timeout := nonInviteTimeout
	if req.IsInvite() {
		timeout = inviteTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	cancelCh := up.cancelled()
	cancelled := false
	final := func(code int, reason string) {
		b.observeCall(req, code)
		if err := up.respond(b.newResponse(req, code, reason)); err != nil {
			b.log.Debug("respond failed", "err", err)
		}
	}
	for {
		select {
		case res := <-down.responses():
			if res.StatusCode < 200 && b.order != nil {
				b.order.delivered(res)
			}
			_, fromUA := down.(*uaDownstream)
			if res.StatusCode == 100 {
				continue // hop by hop
			}
			out := upResponse(res)
			if fromUA && res.StatusCode < 300 {
				b.natResponse(res, out)
			}
			b.nodeHeaders(out, rr, toPeer)
			b.mediaResponse(req, res, out, up, down, toPeer)
			if err := up.respond(out); err != nil {
				b.log.Debug("relaying response failed", "status", res.StatusCode, "err", err, "msg", out.String())
				if req.IsInvite() && res.StatusCode >= 200 && res.StatusCode < 300 {
					b.endCalleeLeg(req, down, res) // orphans.go
				}
			}
			if res.StatusCode >= 200 {
				b.observeCall(req, res.StatusCode)
				return
			}
			if req.IsInvite() && !cancelled {
				timer.Reset(inviteTimeout)
			}
		case <-down.done():
			// A final response may be queued behind the termination.
			select {
			case res := <-down.responses():
				if res.StatusCode >= 200 {
					out := upResponse(res)
					if _, fromUA := down.(*uaDownstream); fromUA && res.StatusCode < 300 {
						b.natResponse(res, out)
					}
					b.nodeHeaders(out, rr, toPeer)
					b.mediaResponse(req, res, out, up, down, toPeer)
					if err := up.respond(out); err != nil && req.IsInvite() && res.StatusCode < 300 {
						b.endCalleeLeg(req, down, res)
					}
					b.observeCall(req, res.StatusCode)
					return
				}
			default:
			}
			err := down.err()
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
		case <-b.ctx.Done():
			final(503, "Service Unavailable: node shutting down")
			return
		case <-cancelCh:
			cancelCh = nil
			cancelled = true
			down.cancel()
			timer.Reset(cancelGrace)
		case <-timer.C:
			if cancelled {
				final(487, "Request Terminated")
				return
			}
			down.cancel()
			final(408, "Request Timeout")
			return
		}
	}
}

// forwardAck forwards an ACK statelessly (the ACK of a 2xx is its own transaction).
func (b *Bridge) forwardAck(req *sip.Request, from peer.ID) {
	if code, reason := validateRequest(req); code != 0 {
		b.log.Debug("dropping invalid ACK", "reason", reason)
		return
	}
	if mf := req.MaxForwards(); (mf != nil && mf.Val() == 0) || b.looped(req) {
		b.log.Debug("dropping looped ACK")
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.locTimeout)
	defer cancel()
	fwd, h, code, reason := b.route(ctx, req, from)
	if code != 0 || h.self {
		b.log.Debug("dropping unroutable ACK", "status", code, "reason", reason)
		return
	}
	b.prepare(req, fwd, h, from)
	b.mediaRequest(req, fwd, h, from)
	var err error
	if h.peer != "" {
		err = b.links.send(ctx, h.peer, h.addrs, fwd)
	} else {
		err = b.cli.WriteRequest(fwd, b.addVia(req))
	}
	if err != nil {
		if h.aor != "" {
			b.binds.forget(h.aor)
		}
		b.log.Debug("forwarding ACK failed", "err", err)
		return
	}
	b.log.Debug("ACK forwarded", "call", req.CallID().Value(), "to-peer", h.peer)
}

// send prepares fwd for hop h and starts the client transaction.
func (b *Bridge) send(ctx context.Context, req, fwd *sip.Request, h hop, from peer.ID) (downstream, int, string) {
	b.prepare(req, fwd, h, from)
	if code, reason := b.mediaRequest(req, fwd, h, from); code != 0 {
		return nil, code, reason
	}
	if h.peer != "" {
		branch, _ := fwd.Via().Params.Get("branch")
		tx, err := b.txs.addClient(clientKey(branch, fwd.Method), h.peer)
		if err != nil {
			return nil, 503, "Service Unavailable"
		}
		if err := b.links.send(ctx, h.peer, h.addrs, fwd); err != nil {
			b.txs.removeClient(tx)
			b.log.Debug("node unreachable", "peer", h.peer, "err", err)
			return nil, 480, "Temporarily Unavailable: serving node unreachable"
		}
		return &peerDownstream{b: b, tx: tx, req: fwd}, 0, ""
	}
	tx, err := b.cli.TransactionRequest(ctx, fwd, b.addVia(req))
	if err != nil {
		b.log.Debug("user agent unreachable", "uri", h.uri.String(), "err", err)
		return nil, 480, "Temporarily Unavailable: user agent unreachable"
	}
	return &uaDownstream{b: b, tx: tx, req: fwd}, 0, ""
}

// prepare applies the proxy's changes to fwd (a clone of req): Max-Forwards, Record-Route,
// the overlay headers and Via for the overlay, destination and transport for UDP/TCP.
func (b *Bridge) prepare(req, fwd *sip.Request, h hop, from peer.ID) {
	if mf := fwd.MaxForwards(); mf != nil {
		mf.Dec()
	} else {
		m := sip.MaxForwardsHeader(69)
		fwd.PrependHeader(&m)
	}
	if from == "" {
		natFromUA(req, fwd, uaNAT(req))
	}
	// Only the caller's and the callee's nodes record-route: an intermediate proxy (overlay in,
	// overlay out) stays out of the dialog, so in-dialog requests go node to node (draft §7 step 11).
	if recordRoutes(req, h, from) {
		b.recordRoute(req, fwd, h, from)
	}
	if h.peer != "" {
		if fwd.GetHeader(headerNodeID) == nil {
			if f := req.From(); f != nil {
				u := sip.Uri{Scheme: f.Address.Scheme, User: f.Address.User, Host: f.Address.Host}
				fwd.AppendHeader(sip.NewHeader(headerNodeID, "<"+u.String()+">"))
			}
		}
		if fwd.GetHeader(headerOvlyID) == nil {
			fwd.AppendHeader(sip.NewHeader(headerOvlyID, "<"+domains.OverlayURI(b.domain)+">"))
		}
		if recordRoutes(req, h, from) {
			b.nodeHeaders(fwd, true, true)
		}
		via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: overlayTransport, Host: b.selfStr}
		via.Params.Add("branch", b.branch(req))
		fwd.PrependHeader(via)
		return
	}
	b.nodeHeaders(fwd, false, false)
	dst, tp := hopDest(h)
	fwd.SetTransport(strings.ToUpper(tp))
	fwd.SetDestination(dst)
	if tp == "udp" && b.udp != nil {
		// send from the listening socket, so that the UA answers to (and NATs map) one port
		fwd.Laddr = sip.Addr{IP: net.ParseIP(b.udpHost), Port: b.udpPort}
	} else {
		fwd.Laddr = sip.Addr{}
	}
}

func uriTransport(u *sip.Uri) string {
	if t, ok := u.UriParams.Get("transport"); ok && t != "" {
		return strings.ToLower(t)
	}
	return "udp"
}

func hasTag(to *sip.ToHeader) bool {
	if to == nil {
		return false
	}
	_, ok := to.Params.Get("tag")
	return ok
}

func (b *Bridge) addressedToMe(req *sip.Request) bool {
	return req.Recipient.User == "" && b.isMine(&req.Recipient)
}

// route finds the next hop of req and returns the clone to forward, or a status to answer.
func (b *Bridge) route(ctx context.Context, req *sip.Request, from peer.ID) (*sip.Request, hop, int, string) {
	fwd := req.Clone()
	// Loose routing: drop our own entries, then follow the next one.
	for r := fwd.Route(); r != nil && b.isMine(&r.Address); r = fwd.Route() {
		removeFirst(fwd, "Route")
	}
	if r := fwd.Route(); r != nil {
		if id, ok := r.Address.UriParams.Get(nodeParam); ok {
			p, err := peer.Decode(id)
			if err != nil {
				return nil, hop{}, 400, "Bad Request: invalid node ID in Route"
			}
			if b.relayDenied(from, p) {
				return nil, hop{}, 403, b.relayDeniedReason()
			}
			return fwd, hop{peer: p}, 0, ""
		}
		u := *r.Address.Clone()
		if !b.mayRelayTo(&u, from) {
			return nil, hop{}, 403, notLocalUAReason
		}
		return fwd, hop{uri: &u}, 0, ""
	}
	u := fwd.Recipient
	if b.isMine(&u) {
		if u.User == "" {
			return fwd, hop{self: true}, 0, ""
		}
		// A UA that addressed the node itself (e.g. sip:bob@127.0.0.1:5060) means a user of this domain.
		fwd.Recipient = sip.Uri{Scheme: "sip", User: u.User, Host: b.domain}
		u = fwd.Recipient
	}
	if u.User == "" || u.Port != 0 || net.ParseIP(strings.Trim(u.Host, "[]")) != nil {
		// A contact address (the last hop of an in-dialog request, or a UA's explicit target).
		uc := *u.Clone()
		if !b.mayRelayTo(&uc, from) {
			return nil, hop{}, 403, notLocalUAReason
		}
		h := hop{uri: &uc}
		h.dst, h.dstTransport = b.reg.natDest(&uc)
		return fwd, h, 0, ""
	}
	aor, err := domains.AORFromURI(&u)
	if err != nil {
		if errors.Is(err, domains.ErrScheme) {
			return nil, hop{}, 416, "Unsupported URI Scheme"
		}
		return nil, hop{}, 400, "Bad Request: invalid Request-URI"
	}
	if !aor.InDomain(b.domain) {
		if b.relayDenied(from, "") {
			return nil, hop{}, 403, b.relayDeniedReason()
		}
		if b.cfg.interDomain == nil {
			return nil, hop{}, 404, fmt.Sprintf("Not Found: no route to domain of %s (this node serves %s)", aor.Host, b.domain)
		}
		ai, err := b.cfg.interDomain(ctx, aor)
		switch {
		case errors.Is(err, domains.ErrNotFound) || (err == nil && ai.ID == ""):
			return nil, hop{}, 404, "Not Found: no proxy for domain of " + aor.Host
		case errors.Is(err, ErrUnavailable):
			return nil, hop{}, 503, "Service Unavailable: no proxy reachable for " + aor.Host
		case err != nil:
			return nil, hop{}, 480, "Temporarily Unavailable: inter-domain route failed"
		case ai.ID == b.self:
			return nil, hop{}, 482, "Loop Detected: inter-domain route points to this node"
		}
		return fwd, hop{peer: ai.ID, addrs: ai.Addrs}, 0, ""
	}
	if t, ok := b.reg.target(aor); ok {
		fwd.Recipient = *t.uri.Clone()
		return fwd, hop{uri: &t.uri, dst: t.dst, dstTransport: t.tp}, 0, ""
	}
	key := aor.String()
	if e, ok := b.binds.get(key, time.Now()); ok {
		return fwd, hop{peer: e.peer, addrs: e.addrs, aor: key}, 0, ""
	}
	lctx, cancel := context.WithTimeout(ctx, b.cfg.locTimeout)
	defer cancel()
	bind, err := b.loc.Lookup(lctx, aor)
	switch {
	case errors.Is(err, domains.ErrNotFound):
		return nil, hop{}, 404, "Not Found: " + aor.String() + " is not registered"
	case err != nil:
		b.log.Warn("lookup failed", "aor", aor.String(), "err", err)
		return nil, hop{}, 480, "Temporarily Unavailable: lookup failed"
	case bind == nil || !bind.Live(time.Now()) || len(bind.Contacts) == 0:
		return nil, hop{}, 404, "Not Found: " + aor.String() + " is not registered"
	case bind.Peer == b.self:
		return nil, hop{}, 480, "Temporarily Unavailable: registration lapsed"
	}
	b.binds.put(key, bind, time.Now())
	return fwd, hop{peer: bind.Peer, addrs: bind.Addrs}, 0, ""
}

// removeFirst removes the first header having any of names (compact forms included).
func removeFirst(m sip.Message, names ...string) {
	type remover interface{ RemoveHeader(string) bool }
	r, ok := m.(remover)
	if !ok {
		return
	}
	for _, h := range headersOf(m) {
		for _, n := range names {
			if strings.EqualFold(h.Name(), n) {
				r.RemoveHeader(h.Name())
				return
			}
		}
	}
}

func headersOf(m sip.Message) []sip.Header {
	switch v := m.(type) {
	case *sip.Request:
		return v.Headers()
	case *sip.Response:
		return v.Headers()
	}
	return nil
}

// upResponse is the copy of a downstream response to send upstream: our Via removed, and
// the destination recomputed from the next Via.
func upResponse(res *sip.Response) *sip.Response {
	out := res.Clone()
	removeFirst(out, "Via", "v")
	out.SetDestination("")
	out.SetTransport("")
	out.SetSource("")
	return out
}

// recordRoutes reports whether this node record-routes req: dialog-creating INVITEs, at the
// caller's node (from a UA) and at the callee's node (to a UA), never at an intermediate
// proxy (overlay in, overlay out).
func recordRoutes(req *sip.Request, h hop, from peer.ID) bool {
	return req.IsInvite() && !hasTag(req.To()) && (from == "" || h.uri != nil)
}

// headerNodeAddrs carries a record-routing node's peer ID and addresses between nodes
// ("Hiersip-Node: <peer-id> <multiaddr> ..."), so that the other end of the dialog can open a
// stream to it for in-dialog requests without a lookup, even across domains. It never
// reaches a UA.
const headerNodeAddrs = "Hiersip-Node"

const maxNodeAddrs = 8

// nodeHeaders strips Hiersip-Node headers from m and, when add, appends this node's.
// Requests and responses going into the overlay keep (and, with add, extend) them.
func (b *Bridge) nodeHeaders(m sip.Message, add, intoOverlay bool) {
	if !intoOverlay {
		for i := len(m.GetHeaders(headerNodeAddrs)); i > 0; i-- {
			removeFirst(m, headerNodeAddrs)
		}
		return
	}
	if !add {
		return
	}
	m.AppendHeader(sip.NewHeader(headerNodeAddrs, b.nodeHeaderValue()))
}

// nodeHeaderValue is this node's Hiersip-Node value, recomputed every few seconds (the host's
// addresses change rarely, and computing them is not free).
func (b *Bridge) nodeHeaderValue() string {
	b.nodeHdrMu.Lock()
	defer b.nodeHdrMu.Unlock()
	if now := time.Now(); now.After(b.nodeHdrAt) {
		parts := []string{b.selfStr}
		for _, a := range b.h.Addrs() {
			if len(parts) > maxNodeAddrs {
				break
			}
			parts = append(parts, a.String())
		}
		b.nodeHdr, b.nodeHdrAt = strings.Join(parts, " "), now.Add(5*time.Second)
	}
	return b.nodeHdr
}

// learnNodes adds the addresses in m's Hiersip-Node headers to the peerstore.
func (b *Bridge) learnNodes(m sip.Message) {
	for i, h := range m.GetHeaders(headerNodeAddrs) {
		if i >= 4 {
			return
		}
		f := strings.Fields(h.Value())
		if len(f) < 2 {
			continue
		}
		p, err := peer.Decode(f[0])
		if err != nil || p == b.self {
			continue
		}
		var addrs []ma.Multiaddr
		for _, s := range f[1:min(len(f), maxNodeAddrs+1)] {
			if a, err := ma.NewMultiaddr(s); err == nil {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) > 0 {
			b.h.Peerstore().AddAddrs(p, addrs, time.Hour)
		}
	}
}
