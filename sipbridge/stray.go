package sipbridge

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
)

// forwardStray forwards a response that matches no transaction — a retransmitted 2xx to an
// INVITE whose client transaction ended with the first 2xx, or another 2xx of a forking
// proxy — statelessly along its Via path (RFC 3261 §16.7); others are dropped.
func (b *Bridge) forwardStray(in *inbound) {
	res := in.res
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
	toPeer := next.Transport == overlayTransport
	out := upResponse(res)
	b.mediaStray(res, out, toPeer)
	var p path
	if toPeer {
		id, err := peer.Decode(next.Host)
		if err != nil {
			return
		}
		p = path{kind: tpP2P, peer: id}
	} else {
		b.nodeHeaders(out, false, false)
		var ok bool
		if p, ok = viaPath(next); !ok {
			return
		}
		if p.kind.stream() {
			if p.conn = b.streamConn(p.kind, p.addr); p.conn == nil {
				return // responses go on the UA's own connection only
			}
			b.sendDetached(p, out) // the caller is a reader: it must not wait for the UA
			return
		}
	}
	if err := b.send(p, out, nil); err != nil {
		b.log.Debug("forwarding 2xx retransmission failed", "err", err)
	}
}

// viaPath is where a response goes by Via v (RFC 3261 §18.2.2, RFC 3581): received and
// rport when set, else the sent-by.
func viaPath(v *sip.ViaHeader) (path, bool) {
	host := v.Host
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	port := v.Port
	if rp, ok := v.Params.Get("rport"); ok && rp != "" {
		if n, err := strconv.Atoi(rp); err == nil {
			port = n
		}
	}
	if port == 0 {
		port = sip.DefaultPort(v.Transport)
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil || port <= 0 || port > 65535 {
		return path{}, false
	}
	p := path{kind: tpUDP, addr: netip.AddrPortFrom(ip.Unmap(), uint16(port))}
	if k := kindOf(v.Transport); k.stream() {
		p.kind = k
	}
	return p, true
}
