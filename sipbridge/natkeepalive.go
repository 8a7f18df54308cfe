package sipbridge

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
)

// DefaultNATKeepalive is how often a node sends OPTIONS to each registered user agent
// behind NAT: well inside the 30 s after which Linux conntrack (and many home routers)
// forget an unanswered UDP mapping.
const DefaultNATKeepalive = 20 * time.Second

// WithNATKeepalive sets how often the node sends an OPTIONS request to each registered
// user agent behind NAT, from its SIP port to the address the registration came from
// (over TCP on the phone's connection), so that the NAT keeps the mapping open and calls
// reach the phone between its registrations (Kamailio nathelper's "sipping"). 0 turns the
// keep-alives off. Default DefaultNATKeepalive.
func WithNATKeepalive(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: NAT keep-alive interval %v is negative", ErrBadOption, d)
		}
		c.natKeepalive = d
		return nil
	}
}

// natPeer is one NAT mapping to keep open: a registered contact's source.
type natPeer struct {
	uri     sip.Uri
	src, tp string
}

// natPeers lists the distinct sources of the live registrations behind NAT.
func (r *registrar) natPeers(now time.Time) []natPeer {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []natPeer
	for _, e := range r.aors {
		for _, c := range e.contacts {
			if !c.nat || !c.expires.After(now) || seen[c.tp+" "+c.src] {
				continue
			}
			seen[c.tp+" "+c.src] = true
			out = append(out, natPeer{uri: *c.uri.Clone(), src: c.src, tp: c.tp})
		}
	}
	return out
}

// runNATKeepalive sends the keep-alives until ctx ends.
func (b *Bridge) runNATKeepalive(ctx context.Context) {
	d := b.cfg.natKeepalive
	if d <= 0 {
		return
	}
	b.every(ctx, d, func() {
		for _, p := range b.reg.natPeers(b.now()) {
			if err := b.keepalive(p); err != nil {
				b.log.Debug("NAT keep-alive failed", "to", p.src, "transport", p.tp, "err", err)
			}
		}
	})
}

// keepalive sends one OPTIONS to p, statelessly: the answer, unmatched, is dropped.
func (b *Bridge) keepalive(p natPeer) error {
	req := sip.NewRequest(sip.OPTIONS, p.uri)
	host, port := b.addrs.advertised(p.tp, p.src)
	tr := kindOf(p.tp).String()
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: tr, Host: host, Port: port, Params: sip.NewParams()}
	via.Params.Add("branch", branchMagic+sip.GenerateTagN(16))
	via.Params.Add("rport", "")
	req.AppendHeader(via)
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "keepalive", Host: b.domain}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: *p.uri.Clone()})
	cid := sip.CallIDHeader(sip.GenerateTagN(20))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.SetBody(nil)
	if isStream(p.tp) {
		open, err := b.withConn(p.tp, p.src, func(c *tcpConn) error { return b.send(path{kind: c.t.kind, addr: c.raddr, conn: c}, req, nil) })
		if !open {
			return fmt.Errorf("%w: no connection from %s", ErrLinkDown, p.src)
		}
		return err
	}
	if b.udp == nil {
		return nil
	}
	ap, err := netip.ParseAddrPort(p.src)
	if err != nil {
		return err
	}
	return b.send(path{kind: tpUDP, addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, req, nil)
}
