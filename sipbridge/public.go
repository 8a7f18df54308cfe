package sipbridge

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Inbound from ordinary SIP. A proxy can listen on a public SIP address for its domain
// (WithPublic: what an operator publishes in the domain's DNS SRV records) where ordinary
// SIP servers (Kamailio, a provider) send requests for its users. What arrives there is
// admitted as from a user agent — the same raw budget, rate limits and transaction
// bounds per source IP — but it is no user agent of the node: no digest is asked (the
// servers hold no credentials here), REGISTER is refused, and a request is served only
// when its route stays inside the domain: an initial request for a user of the node's
// domain (looked up in the domain as any), OPTIONS to the node itself, or an in-dialog
// request whose route set names this node and then another node (or a local UA). Anything
// else — a request for another domain, a Route to an address outside — gets 403 and
// goes nowhere: the public address is no relay, not even towards the servers the node
// talks to (WithOutbound's requests never start there). The node record-routes the
// dialogs it admits there with the public address, notes the addresses of the calling
// side (its source, Contact, Record-Route) as those the dialog's requests may go back to
// (outbound.go), and answers from the public socket.

// publicTransport names the public listener among the node's addresses (addrBook).
const publicTransport = "public"

// WithPublic serves ordinary SIP servers on the UDP address addr ("" none, the default):
// requests for the users of the node's domain only (see above). Port 0 picks a free port.
func WithPublic(addr string) Option {
	return func(c *config) error { c.publicAddr = addr; return nil }
}

// WithPublicTCP serves ordinary SIP servers over TCP on addr as WithPublic does over UDP
// ("" none, the default); its connections count in the caps of the UA-facing ones.
func WithPublicTCP(addr string) Option {
	return func(c *config) error { c.publicTCP = addr; return nil }
}

// WithPublicTLS serves ordinary SIP servers over TLS on addr (as WithPublic; "" none, the
// default) with the server configuration conf (siptls.Server; client_auth require for
// mutual TLS between servers, RFC 5922 §7.3).
func WithPublicTLS(addr string, conf *tls.Config) Option {
	return func(c *config) error {
		if addr != "" && (conf == nil || (len(conf.Certificates) == 0 && conf.GetCertificate == nil)) {
			return fmt.Errorf("%w: public TLS listener %s without a certificate", ErrBadOption, addr)
		}
		c.publicTLS, c.publicTLSConf = addr, conf
		return nil
	}
}

// PublicTLSAddr is the bound public SIP/TLS address ("" when off), as UDPAddr.
func (b *Bridge) PublicTLSAddr() string { return b.pubTLS.shown() }

// PublicTCPAddr is the bound public SIP/TCP address ("" when off), as UDPAddr.
func (b *Bridge) PublicTCPAddr() string { return b.pubTCP.shown() }

// PublicAddr is the bound public SIP address ("" when off), as UDPAddr.
func (b *Bridge) PublicAddr() string {
	if b.pub == nil {
		return ""
	}
	return b.pubShow
}

// listenPublic opens the public UDP socket.
func (b *Bridge) listenPublic() error {
	for _, s := range []struct {
		kind tpKind
		addr string
		conf *tls.Config
		to   **tcpTransport
	}{{tpTCP, b.cfg.publicTCP, nil, &b.pubTCP}, {tpTLS, b.cfg.publicTLS, b.cfg.publicTLSConf, &b.pubTLS}} {
		if s.addr == "" {
			continue
		}
		name := strings.ToLower(s.kind.String())
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			return &ListenError{Transport: publicTransport + "." + name, Err: err}
		}
		t := newTCPTransport(b, l)
		if b.tcp != nil {
			t.count = b.tcp.count // one cap for all UA-facing connections
		}
		t.pub, t.kind, t.serverTLS = true, s.kind, s.conf
		if s.kind == tpTLS {
			t.clientTLS = b.cfg.tlsClient
		}
		a := l.Addr().(*net.TCPAddr)
		t.show = shownAddr(s.addr, a.IP, a.Port)
		b.addrs.addStream(publicTransport+"-"+name, a)
		*s.to = t
	}
	if b.cfg.publicAddr == "" {
		return nil
	}
	la, err := net.ResolveUDPAddr("udp", b.cfg.publicAddr)
	if err != nil {
		return &ListenError{Transport: publicTransport + ".udp", Err: err}
	}
	uc, err := net.ListenUDP("udp", la)
	if err != nil {
		return &ListenError{Transport: publicTransport + ".udp", Err: err}
	}
	if b.cfg.udpBuf > 0 {
		setSocketBuffers(uc, b.cfg.udpBuf)
	}
	b.pub = newUDPTransport(b, uc)
	b.pub.pub = true
	a := uc.LocalAddr().(*net.UDPAddr)
	b.pubShow = shownAddr(b.cfg.publicAddr, a.IP, a.Port)
	b.addrs.addStream(publicTransport, &net.TCPAddr{IP: a.IP, Port: a.Port})
	return nil
}

// isPublic reports whether req arrived at the public address.
func (b *Bridge) isPublic(req *sip.Request) bool {
	d := req.Destination()
	return d != "" && (b.pub != nil && d == b.pubShow || b.pubTCP != nil && d == b.pubTCP.show || b.pubTLS != nil && d == b.pubTLS.show)
}

// publicURI is this node's Record-Route URI for the public side of a dialog.
func (b *Bridge) publicURI(transport, dst string) sip.Uri {
	key, tp := publicTransport, ""
	switch k := kindOf(transport); {
	case k == tpTCP && b.pubTCP != nil, k == tpTLS && b.pubTLS != nil:
		tp = strings.ToLower(k.String())
		key += "-" + tp
	}
	host, port := b.addrs.advertised(key, dst)
	u := sip.Uri{Scheme: "sip", Host: host, Port: port}
	u.UriParams = sip.NewParams()
	if tp != "" {
		u.UriParams.Add("transport", tp)
	}
	u.UriParams.Add("lr", "")
	u.UriParams.Add(nodeParam, b.selfStr)
	return u
}

// publicLink is the admission link of the public address (see above).
func (b *Bridge) publicLink(next handler) handler {
	return handlerFunc(func(in *inbound) {
		if !in.from.pub || in.req == nil {
			next.serve(in)
			return
		}
		req := in.req
		if req.Method == sip.REGISTER {
			b.respondTo(in, 403, "Forbidden: no registrations at this address")
			return
		}
		d := b.route(req, "", in.at)
		switch {
		case d.code != 0:
			b.respondTo(in, d.code, d.reason)
			return
		case d.inter || d.hop.ext != nil || (d.lookup == nil && d.hop.peer == "" && d.hop.uri == nil && !d.hop.self):
			b.lim.stats.relayRefused.Add(1)
			b.respondTo(in, 403, fmt.Sprintf("Forbidden: this address serves only the users of %s", b.domain))
			return
		}
		if req.IsInvite() && !hasTag(req.To()) {
			// The calling side: where the dialog's requests may go back to.
			b.ext.noteAddr(req.Source())
			b.ext.note(req)
			for _, h := range req.GetHeaders("Record-Route") {
				for _, v := range splitAddrList(h.Value()) {
					var u sip.Uri
					if _, err := sip.ParseAddressValue(v, &u, nil); err == nil && !u.UriParams.Has(nodeParam) {
						b.ext.noteAddr(uriAddrKey(&u))
					}
				}
			}
		}
		next.serve(in)
	})
}

// sendTP is the transport that sends over kind k when no connection is given: the
// UA-facing one, else the public one of that kind (a node that talks TLS or TCP only to
// other servers, on its public address).
func (b *Bridge) sendTP(k tpKind) *tcpTransport {
	if t := b.streamTP(k); t != nil {
		return t
	}
	switch k {
	case tpTCP:
		return b.pubTCP
	case tpTLS:
		return b.pubTLS
	}
	return nil
}
