package sipbridge

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/domains"
)

// Phones behind NAT (RFC 3581, and the registrar practice of Kamailio's nathelper and
// RFC 5626's flow reuse). A user agent behind a NAT writes its private address into Via
// and Contact; its messages arrive from the NAT's public address and port. The node
// notices by comparing the top Via's sent-by with the source of the request (UDP: address
// and port; TCP: the address, the port of a TCP connection is its own):
//
//   - A REGISTER: the contact is stored as sent (the UA finds it in the 200 OK) together
//     with the source and transport it came from; requests for that contact go to that
//     source — over UDP from the node's listening socket, over TCP on the phone's own
//     connection while it is open (else to the contact). The node keeps the NAT binding
//     open by sending OPTIONS there every WithNATKeepalive.
//   - A dialog: in the Contact of a request or a 2xx/1xx response that a user agent behind
//     NAT sends through the node, host and port are replaced by the source (as nathelper's
//     fix_nated_contact), so that the other end's in-dialog requests come back through the
//     node's Record-Route with a Request-URI the node can reach.
//
// Only sources the node received a user agent's own messages from are used, and a peer
// can only target them as before (see uaaddrs.go): a Contact naming a private address of
// a NATed phone is not remembered as a user agent's address, the source is. A forged
// Contact changes nothing: requests for it go to the forger's own source.

// viaNATted reports whether req, received from a UA over transport, came through a NAT:
// its top Via does not name its source.
func viaNATted(req *sip.Request) bool {
	via := req.Via()
	src := req.Source()
	if via == nil || src == "" {
		return false
	}
	srcIP, ok := addrIP(src)
	if !ok {
		return false
	}
	if vip, err := netip.ParseAddr(normHost(via.Host)); err != nil || vip.Unmap() != srcIP {
		return true // a host name, or another address
	}
	if isStream(req.Transport()) {
		return false
	}
	return viaPort(via) != portOf(src)
}

func viaPort(v *sip.ViaHeader) int {
	if v.Port != 0 {
		return v.Port
	}
	return sip.DefaultPort(v.Transport)
}

// sameAddr reports whether u's host and port are src ("ip:port"); over TCP only the
// addresses are compared.
func sameAddr(u *sip.Uri, src, transport string) bool {
	if isStream(transport) {
		a, ok1 := addrIP(u.Host)
		b, ok2 := addrIP(src)
		return ok1 && ok2 && a == b
	}
	ip, ok1 := addrIP(u.Host)
	srcIP, ok2 := addrIP(src)
	if !ok1 || !ok2 {
		return uriAddrKey(u) == uriAddrKey(srcURI(src))
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if u.IsEncrypted() {
			port = 5061
		}
	}
	return ip == srcIP && port == portOf(src)
}

// srcURI is a URI naming address src ("ip:port").
func srcURI(src string) *sip.Uri {
	ip, ok := addrIP(src)
	if !ok {
		return &sip.Uri{}
	}
	return &sip.Uri{Scheme: "sip", Host: ip.String(), Port: portOf(src)}
}

// fixContact replaces host and port of m's Contact by src (and its transport by TCP when
// the message came over TCP), keeping user and parameters. The Contact is replaced by a
// changed copy: m shares its headers with the message as received (forward.go).
func fixContact(m interface {
	Contact() *sip.ContactHeader
	ReplaceHeader(sip.Header)
}, src, transport string) {
	orig := m.Contact()
	if orig == nil {
		return
	}
	s := srcURI(src)
	if s.Host == "" {
		return
	}
	c := orig.Clone()
	m.ReplaceHeader(c)
	c.Address.Host, c.Address.Port = s.Host, s.Port
	if isStream(transport) {
		if c.Address.UriParams == nil {
			c.Address.UriParams = sip.NewParams()
		}
		c.Address.UriParams.Add("transport", strings.ToLower(transport))
	}
}

// uaNAT reports whether req, from a local UA, came through a NAT and names another
// address in its Contact than the one it came from.
func uaNAT(req *sip.Request) bool {
	c := req.Contact()
	return c != nil && viaNATted(req) && !sameAddr(&c.Address, req.Source(), req.Transport())
}

// noteUA remembers the address of a local UA that sent req: its source when it is behind
// NAT, else its Contact, but only when the Contact names the host the request came from
// (a Contact naming another host would let a UA make the node a reflector to it).
func (b *Bridge) noteUA(req *sip.Request) {
	if b.isPublic(req) {
		return // an ordinary SIP server, not a UA (public.go)
	}
	if uaNAT(req) {
		b.uas.noteAddr(uriAddrKey(srcURI(req.Source())))
		return
	}
	c := req.Contact()
	if c == nil {
		return
	}
	src, ok1 := addrIP(req.Source())
	host, ok2 := addrIP(c.Address.Host)
	if !ok1 || !ok2 || src != host {
		return
	}
	b.uas.note(req)
}

// natResponse does for a response from a local UA what natRequest does for a request;
// out is the copy relayed upstream, fixed when the UA is behind NAT.
func (b *Bridge) natResponse(res, out *sip.Response) {
	c := res.Contact()
	if c == nil || res.Source() == "" {
		return
	}
	if !sameAddr(&c.Address, res.Source(), res.Transport()) {
		b.uas.noteAddr(uriAddrKey(srcURI(res.Source())))
		fixContact(out, res.Source(), res.Transport())
		return
	}
	b.uas.note(res)
}

// natFromUA applies RFC 3581 to the UA's Via in fwd (received, rport) and fixes its
// Contact when nat.
func natFromUA(req, fwd *sip.Request, nat bool) {
	if v := fwd.Via(); v != nil && v.Params != nil {
		if rp, ok := v.Params.Get("rport"); ok && rp == "" {
			if ip, ok := addrIP(req.Source()); ok {
				v = v.Clone() // the received Via is shared (forward.go)
				fwd.ReplaceHeader(v)
				v.Params.Add("rport", strconv.Itoa(portOf(req.Source())))
				v.Params.Add("received", ip.String())
			}
		}
	}
	if nat {
		fixContact(fwd, req.Source(), req.Transport())
	}
}

// regTarget is where a request for a registered contact goes.
type regTarget struct {
	uri     sip.Uri
	dst, tp string // "" unless the UA is behind NAT (hop.dst)
}

// dest returns where requests for c go: its source when it is behind NAT (over TCP only
// while its connection is open), else "" (its URI).
func (r *registrar) dest(c *contactEntry) (string, string) {
	if !c.nat || c.src == "" {
		return "", ""
	}
	if isStream(c.tp) {
		if open, _ := r.b.withConn(c.tp, c.src, nil); !open {
			return "", ""
		}
	}
	return c.src, c.tp
}

// target returns the latest registered live contact of aor at this node.
func (r *registrar) target(aor domains.AOR) (regTarget, bool) {
	r.mu.Lock()
	e := r.aors[aor.String()]
	var c *contactEntry
	if e != nil {
		now := r.b.now()
		for i := len(e.contacts) - 1; i >= 0; i-- {
			if e.contacts[i].expires.After(now) {
				c = e.contacts[i]
				break
			}
		}
	}
	var t regTarget
	if c != nil {
		t.uri = *c.uri.Clone()
	}
	r.mu.Unlock()
	if c == nil {
		return t, false
	}
	t.dst, t.tp = r.dest(c)
	return t, true
}

// natDest returns the source of a live registered contact at u's address that is behind
// NAT ("" when there is none).
func (r *registrar) natDest(u *sip.Uri) (string, string) {
	var buf [64]byte
	key := appendAddrKey(buf[:0], u)
	if len(key) == 0 {
		return "", ""
	}
	r.mu.Lock()
	var found *contactEntry
	now := r.b.now()
	for _, c := range r.byAddr[string(key)] {
		if c.nat && c.expires.After(now) {
			found = c
		}
	}
	r.mu.Unlock()
	if found == nil {
		return "", ""
	}
	return r.dest(found)
}
