package sipbridge

import (
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
)

// Forwarding a request in composable steps (STYLE.md item 12, as sipgo's
// ClientRequestAddVia, ClientRequestDecreaseMaxForward): each step is one job of RFC 3261
// §16.6, applied to the forwarded copy.
//
// The copy is cheap: it has its own header list but shares the header values with the
// request as received, until a step replaces one (a step never changes a shared header:
// it puts a changed copy in its place). The request as received stays as it came, for the
// server transaction's answers and the relay.

// forwarding is one request being forwarded: the request as received, its copy, the
// next hop and where it came from.
type forwarding struct {
	req  *sip.Request
	fwd  *sip.Request
	hop  hop
	from peer.ID // "" for a local UA
}

// copyRequest returns req with a header list of its own (the headers shared), the same
// body and a Request-URI of its own.
func copyRequest(req *sip.Request) *sip.Request {
	c := sip.NewRequest(req.Method, req.Recipient)
	c.SipVersion = req.SipVersion
	for _, h := range req.Headers() {
		c.AppendHeader(h)
	}
	c.SetBody(req.Body())
	c.SetSource(req.Source())
	c.SetTransport(req.Transport())
	return c
}

// forward builds the copy of req to send to d's hop: d's Route and Request-URI changes,
// then the proxy's steps (prepare).
func (b *Bridge) forward(req *sip.Request, d decision, from peer.ID) *forwarding {
	f := &forwarding{req: req, fwd: copyRequest(req), hop: d.hop, from: from}
	for range d.pop {
		removeFirst(f.fwd, "Route")
	}
	if d.ruri != nil {
		f.fwd.Recipient = *d.ruri
	}
	b.prepare(f)
	if f.hop.ext != nil {
		f.fwd = hideOverlayVias(f.fwd) // outbound.go
	}
	b.callForwarded(f) // calls.go
	return f
}

// prepare applies the proxy's steps to f.fwd, in order.
func (b *Bridge) prepare(f *forwarding) {
	decMaxForwards(f.fwd)
	if f.from == "" {
		natFromUA(f.req, f.fwd, uaNAT(f.req)) // nat.go
	}
	rr := recordRoutes(f.req, f.hop, f.from)
	if rr {
		b.recordRoute(f.req, f.fwd, f.hop, f.from) // addrs.go
	}
	if f.hop.peer != "" {
		b.overlayHeaders(f.req, f.fwd, rr)
		b.addOverlayVia(f.req, f.fwd)
		return
	}
	b.nodeHeaders(f.fwd, false, false)
	b.addUAVia(f.req, f.fwd, f.hop)
}

// decMaxForwards decrements Max-Forwards (RFC 3261 §16.6 step 3), adding 69 when absent.
func decMaxForwards(fwd *sip.Request) {
	if mf := fwd.MaxForwards(); mf != nil {
		v := sip.MaxForwardsHeader(max(mf.Val(), 1) - 1)
		fwd.ReplaceHeader(&v) // a new header: the received one is shared
		return
	}
	m := sip.MaxForwardsHeader(69)
	fwd.PrependHeader(&m)
}

// overlayHeaders adds the draft's §4.3 headers to a request going into the overlay —
// "Node-ID: <sip:user@domain>" (the originating user) and "Overlay-ID:
// <sip:overlay@domain>" when absent — and, at a record-routing node, its Hiersip-Node.
func (b *Bridge) overlayHeaders(req, fwd *sip.Request, rr bool) {
	if !hasHeader(fwd, headerNodeID) {
		if f := req.From(); f != nil {
			w := getBuf()
			w.WriteByte('<')
			writeURI(w, &sip.Uri{Scheme: f.Address.Scheme, User: f.Address.User, Host: f.Address.Host})
			w.WriteByte('>')
			fwd.AppendHeader(sip.NewHeader(headerNodeID, w.String()))
			putBuf(w)
		}
	}
	if !hasHeader(fwd, headerOvlyID) {
		fwd.AppendHeader(sip.NewHeader(headerOvlyID, "<"+domains.OverlayURI(b.domain)+">"))
	}
	if rr {
		b.nodeHeaders(fwd, true, true)
	}
}

// addOverlayVia puts this node's overlay Via on top: "SIP/2.0/P2P <peer-id>" with a
// loop-detecting branch computed from req, the request as received (loop.go).
func (b *Bridge) addOverlayVia(req, fwd *sip.Request) {
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: overlayTransport, Host: b.selfStr,
		Params: sip.NewParams()}
	via.Params.Add("branch", b.branch(req))
	fwd.PrependHeader(via)
}

// addUAVia puts this node's Via on top of a request to a UA: the address advertised
// towards its destination, a loop-detecting branch computed from req, rport (RFC 3581).
func (b *Bridge) addUAVia(req, fwd *sip.Request, h hop) {
	dst, tp := hopDest(h)
	host, port := b.addrs.advertised(tp, dst)
	if b.outPublic(h, tp) {
		host, port = b.addrs.advertised(publicTransport, dst) // outbound.go
	}
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(tp),
		Host: host, Port: port, Params: sip.NewParams()}
	via.Params.Add("branch", b.branch(req))
	via.Params.Add("rport", "")
	fwd.PrependHeader(via)
}

// recordRoutes reports whether this node record-routes req: dialog-creating INVITEs and
// SUBSCRIBEs, at the caller's node (from a UA) and at the callee's node (to a UA), never
// at an intermediate proxy (overlay in, overlay out).
func recordRoutes(req *sip.Request, h hop, from peer.ID) bool {
	return (req.IsInvite() || req.Method == sip.SUBSCRIBE) && !hasTag(req.To()) && (from == "" || h.uri != nil)
}

// cancelFor builds the CANCEL of a forwarded INVITE (RFC 3261 §9.1): same Request-URI,
// top Via, From, To, Call-ID, CSeq number and Route set.
func cancelFor(inv *sip.Request) *sip.Request {
	c := sip.NewRequest(sip.CANCEL, inv.Recipient)
	c.AppendHeader(inv.Via())
	for _, h := range inv.GetHeaders("Route") {
		c.AppendHeader(h)
	}
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.AppendHeader(inv.From())
	c.AppendHeader(inv.To())
	c.AppendHeader(inv.CallID())
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	c.SetBody(nil)
	return c
}

// upResponse is the copy of a response from downstream to send upstream: this node's
// Via removed (RFC 3261 §16.7 step 3), the other headers shared with res until changed.
func upResponse(res *sip.Response) *sip.Response {
	out := sip.NewResponse(res.StatusCode, res.Reason)
	out.SipVersion = res.SipVersion
	skipped := false
	for _, h := range res.Headers() {
		if !skipped {
			if _, ok := h.(*sip.ViaHeader); ok {
				skipped = true
				continue
			}
		}
		out.AppendHeader(h)
	}
	out.SetBody(res.Body())
	return out
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

func hasTag(to *sip.ToHeader) bool {
	if to == nil {
		return false
	}
	_, ok := to.Params.Get("tag")
	return ok
}

func uriTransport(u *sip.Uri) string {
	if t, ok := u.UriParams.Get("transport"); ok && t != "" {
		return strings.ToLower(t)
	}
	if u.IsEncrypted() {
		return "tls" // sips: (RFC 5630)
	}
	return "udp"
}

// maxForwardsOf is the request's Max-Forwards (70 when absent).
func maxForwardsOf(req *sip.Request) int {
	if mf := req.MaxForwards(); mf != nil {
		return int(mf.Val())
	}
	return 70
}

var _ = strconv.Itoa
