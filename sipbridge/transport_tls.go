package sipbridge

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The secure and browser transports for user agents: SIP over TLS (RFC 3261 §26, RFC
// 5630's sips:), and SIP over WebSocket, plain and over TLS (RFC 7118, transport_ws.go).
// Each is the TCP transport (transport_tcp.go) with a different layer between the socket
// and the messages: crypto/tls for TLS, gobwas/ws framing for WS, both for WSS. They share
// everything else: the accept loop with its caps (MaxTCP and MaxTCPPerSource count the
// connections of all four transports together: they take the same file descriptors), the
// raw budget of a source, the admission chain, the message and idle timeouts, and the
// rule that requests for a UA go on the connection its registration came on.
//
// Over TLS, WS and WSS the flow is the contact (RFC 5626, RFC 7118 §5): a contact
// registered over them is reached on the connection it registered on while it is open;
// a WS contact (whose host is a made-up ".invalid" name) only so. The node never dials a
// WebSocket client; it dials a TLS contact only with a client configuration
// (WithTLSClient), verifying the UA's certificate.

// WithTLS serves SIP over TLS to user agents on addr ("" disables it, the default), with
// the server configuration conf (siptls.Server makes one: certificate, TLS 1.2 or later,
// client certificate checking). Port 0 picks a free port.
func WithTLS(addr string, conf *tls.Config) Option {
	return func(c *config) error {
		if addr != "" && (conf == nil || (len(conf.Certificates) == 0 && conf.GetCertificate == nil)) {
			return fmt.Errorf("%w: TLS listener %s without a certificate", ErrBadOption, addr)
		}
		c.tlsAddr, c.tlsConf = addr, conf
		return nil
	}
}

// WithWS serves SIP over plain WebSocket (RFC 7118) on addr ("" disables it, the default).
// Browsers only open ws: from pages served over plain HTTP; prefer WithWSS.
func WithWS(addr string) Option { return func(c *config) error { c.wsAddr = addr; return nil } }

// WithWSS serves SIP over secure WebSocket on addr ("" disables it, the default), with the
// server configuration conf (as WithTLS).
func WithWSS(addr string, conf *tls.Config) Option {
	return func(c *config) error {
		if addr != "" && (conf == nil || (len(conf.Certificates) == 0 && conf.GetCertificate == nil)) {
			return fmt.Errorf("%w: WSS listener %s without a certificate", ErrBadOption, addr)
		}
		c.wssAddr, c.wssConf = addr, conf
		return nil
	}
}

// WithTLSClient lets the node open TLS connections to user agents whose TLS connection is
// gone (a contact with transport=tls or a sips: URI), verified with conf (nil: none are
// opened; requests for such a UA get 480 until it connects again).
func WithTLSClient(conf *tls.Config) Option {
	return func(c *config) error { c.tlsClient = conf; return nil }
}

// kindOf is the transport kind named by a URI's or Via's transport ("udp", "TCP", ...).
func kindOf(tp string) tpKind {
	switch strings.ToLower(tp) {
	case "tcp":
		return tpTCP
	case "tls":
		return tpTLS
	case "ws":
		return tpWS
	case "wss":
		return tpWSS
	}
	return tpUDP
}

// isStream reports whether transport tp ("tcp", "TLS", ...) is a UA-facing connection.
func isStream(tp string) bool { return kindOf(tp).stream() }

// flowTransport reports whether a contact registered over tp is reached on the
// registration's own connection (TLS, WS, WSS: the flow is the contact).
func flowTransport(tp string) bool {
	k := kindOf(tp)
	return k == tpTLS || k == tpWS || k == tpWSS
}

// streamTP is the transport of kind k (nil when off).
func (b *Bridge) streamTP(k tpKind) *tcpTransport {
	switch k {
	case tpTCP:
		return b.tcp
	case tpTLS:
		return b.tls
	case tpWS:
		return b.ws
	case tpWSS:
		return b.wss
	}
	return nil
}

// streamConn returns the open connection of transport k from addr, or nil.
func (b *Bridge) streamConn(k tpKind, addr netip.AddrPort) *tcpConn {
	t := b.streamTP(k)
	if t == nil {
		return nil
	}
	if c := t.conn(addr); c != nil && !c.closed() {
		return c
	}
	return nil
}

// withConn runs f (if not nil) with the open connection of transport tp from addr
// ("ip:port") and reports whether there is one.
func (b *Bridge) withConn(tp, addr string, f func(*tcpConn) error) (bool, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false, nil
	}
	c := b.streamConn(kindOf(tp), netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	if c == nil {
		return false, nil
	}
	if f == nil {
		return true, nil
	}
	return true, f(c)
}

// listenSecure opens the TLS, WS and WSS listeners the configuration names.
func (b *Bridge) listenSecure() error {
	cfg := &b.cfg
	var shared *counter
	if b.tcp != nil {
		shared = b.tcp.count
	}
	open := func(kind tpKind, addr string, conf *tls.Config) (*tcpTransport, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, &ListenError{Transport: strings.ToLower(kind.String()), Err: err}
		}
		t := newTCPTransport(b, l)
		if shared == nil {
			shared = t.count
		}
		t.count, t.kind, t.serverTLS = shared, kind, conf
		if kind == tpTLS {
			t.clientTLS = cfg.tlsClient
		}
		a := l.Addr().(*net.TCPAddr)
		t.show = shownAddr(addr, a.IP, a.Port)
		b.addrs.addStream(strings.ToLower(kind.String()), a)
		return t, nil
	}
	var err error
	if err := b.listenPublic(); err != nil { // public.go
		return err
	}
	if cfg.tlsAddr != "" {
		if b.tls, err = open(tpTLS, cfg.tlsAddr, cfg.tlsConf); err != nil {
			return err
		}
	}
	if cfg.wsAddr != "" {
		if b.ws, err = open(tpWS, cfg.wsAddr, nil); err != nil {
			return err
		}
	}
	if cfg.wssAddr != "" {
		if b.wss, err = open(tpWSS, cfg.wssAddr, cfg.wssConf); err != nil {
			return err
		}
	}
	return nil
}

// serveSecure starts serving the TLS, WS and WSS listeners.
func (b *Bridge) serveSecure() {
	if b.pub != nil {
		b.spawn(b.pub.serve)
	}
	if b.pubTCP != nil {
		b.spawn(b.pubTCP.serve)
	}
	if b.pubTLS != nil {
		b.spawn(b.pubTLS.serve)
	}
	for _, t := range []*tcpTransport{b.tls, b.ws, b.wss} {
		if t != nil {
			b.spawn(t.serve)
			if t.kind != tpTLS {
				b.spawn(t.pingWS)
			}
		}
	}
}

// closeSecure closes the TLS, WS and WSS listeners and their connections.
func (b *Bridge) closeSecure() {
	if b.pub != nil {
		_ = b.pub.close()
	}
	if b.pubTCP != nil {
		b.pubTCP.close()
	}
	if b.pubTLS != nil {
		b.pubTLS.close()
	}
	for _, t := range []*tcpTransport{b.tls, b.ws, b.wss} {
		if t != nil {
			t.close()
		}
	}
}

// TLSAddr is the bound SIP-over-TLS address ("" when off), as UDPAddr.
func (b *Bridge) TLSAddr() string { return b.tls.shown() }

// WSAddr is the bound SIP-over-WebSocket address ("" when off), as UDPAddr.
func (b *Bridge) WSAddr() string { return b.ws.shown() }

// WSSAddr is the bound SIP-over-secure-WebSocket address ("" when off), as UDPAddr.
func (b *Bridge) WSSAddr() string { return b.wss.shown() }

func (t *tcpTransport) shown() string {
	if t == nil {
		return ""
	}
	return t.show
}

// handshake runs the TLS handshake of an accepted connection within the message timeout
// (a client that opens a connection and says nothing holds it no longer).
func (c *tcpConn) handshake() error {
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.t.b.ctx, c.t.b.cfg.conns.MessageTimeout)
	defer cancel()
	_ = c.Conn.SetDeadline(time.Now().Add(c.t.b.cfg.conns.MessageTimeout))
	err := tc.HandshakeContext(ctx)
	_ = c.Conn.SetDeadline(time.Time{})
	if err != nil {
		c.t.b.log.Debug("TLS handshake failed", "transport", c.t.kind.String(), "from", c.raddr.String(), "err", err)
	}
	return err
}

// dialTLS opens a TLS connection to addr, verified with the client configuration.
func (t *tcpTransport) dialTLS(ctx context.Context, addr netip.AddrPort, name string) (net.Conn, error) {
	if t.clientTLS == nil {
		return nil, fmt.Errorf("%w: no TLS connection from %s (the node opens none)", ErrLinkDown, addr)
	}
	conf := t.clientTLS
	if name != "" {
		conf = conf.Clone()
		conf.ServerName = name // the identity checked and the SNI sent (RFC 5922 §4)
	}
	d := tls.Dialer{Config: conf}
	return d.DialContext(ctx, "tcp", addr.String())
}

// streamSelfURI is selfURI for a UA reached over TLS, WS or WSS: the node's address of
// that listener, with the transport named (a TLS one as transport=tls in a sip: URI, which
// every phone follows; RFC 5630 lets a proxy keep sip: in Record-Route).
func (b *Bridge) streamSelfURI(transport, dst string) sip.Uri {
	return b.routeURI(strings.ToLower(transport), dst) // addrs.go
}

// ListenError is the failure to open the TLS, WS or WSS listener (a busy port): a node
// names the setting of Transport ("tls", "ws", "wss") in its configuration error.
type ListenError struct {
	Transport string
	Err       error
}

func (e *ListenError) Error() string {
	return "sipbridge: listen " + e.Transport + ": " + e.Err.Error()
}

func (e *ListenError) Unwrap() error { return e.Err }
