package sipbridge

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// The transport layer: where messages come from and go to.
//
// A bridge has three transports (transport_udp.go, transport_tcp.go, links.go): the
// UA-facing UDP socket, the UA-facing TCP connections, and the libp2p streams to other
// nodes. Each reads its messages in one goroutine per socket, connection or stream, in
// arrival order; screens the bytes against the source's raw budget (buckets.go); parses
// each message once with sipgo's parser; and hands it, as an inbound, to the admission
// chain (admission.go), which is the same for all three. Nothing downstream parses again.
//
// A path names where a transaction's messages go: a UA's address over UDP, a UA's TCP
// connection, or a peer. Writes never wait on the far end's reading: UDP writes go to
// the socket, writes to a peer are queued on the peer's link (links.go), and only a TCP
// write can wait (on that UA's own connection, for at most writeTimeout).

// tpKind is the transport of a path.
type tpKind uint8

const (
	tpUDP tpKind = iota + 1
	tpTCP
	tpP2P
	tpTLS // TCP over TLS (transport_tls.go)
	tpWS  // WebSocket (transport_ws.go)
	tpWSS // WebSocket over TLS
)

// stream reports whether k is one of the UA-facing connection transports (TCP, TLS, WS,
// WSS), which share tcpTransport.
func (k tpKind) stream() bool { return k == tpTCP || k == tpTLS || k == tpWS || k == tpWSS }

func (k tpKind) String() string {
	switch k {
	case tpUDP:
		return "UDP"
	case tpTCP:
		return "TCP"
	case tpP2P:
		return overlayTransport
	case tpTLS:
		return "TLS"
	case tpWS:
		return "WS"
	case tpWSS:
		return "WSS"
	}
	return "?"
}

// path is where messages go: a UA at addr over UDP or TCP (conn: its connection, when
// known), or a peer.
type path struct {
	kind  tpKind
	addr  netip.AddrPort
	conn  *tcpConn
	peer  peer.ID
	addrs []ma.Multiaddr // a peer's addresses, added to the peerstore before dialing it
	pub   bool           // UDP: over the public socket (public.go)
	name  string         // TLS: the name to verify when a connection is opened (outbound.go)
}

func (p path) reliable() bool { return p.kind != tpUDP }

func (p path) String() string {
	if p.kind == tpP2P {
		return p.peer.String()
	}
	return p.kind.String() + " " + p.addr.String()
}

// inbound is one message as a transport hands it on: parsed once, with where it came from.
type inbound struct {
	req  *sip.Request // one of req and res
	res  *sip.Response
	from path      // where it came from: answers go back there
	key  string    // the source's limiter key: a UA's IP (an IPv6 /64), a peer's ID
	at   time.Time // when it was read
	stx  *serverTx // the server transaction of a request, once the transaction link made it
}

// newInbound is msg, read at at from from (key: the source's limiter key), for the
// admission chain.
func newInbound(msg sip.Message, from path, key string, at time.Time) *inbound {
	in := &inbound{from: from, key: key, at: at}
	switch m := msg.(type) {
	case *sip.Request:
		in.req = m
	case *sip.Response:
		in.res = m
	}
	return in
}

func (in *inbound) msg() sip.Message {
	if in.req != nil {
		return in.req
	}
	return in.res
}

// fromPeer is the peer a message came from ("" for a UA).
func (in *inbound) fromPeer() peer.ID {
	if in.from.kind == tpP2P {
		return in.from.peer
	}
	return ""
}

// newParser is sipgo's parser with the headers the bridge reads typed: sipgo's defaults
// without Record-Route, which a proxy only passes on (the rare reader of one,
// RecordRoute(), has sipgo parse it then).
func newParser() *sip.Parser {
	hp := map[string]sip.HeaderParser{}
	for k, v := range sip.DefaultHeadersParser() {
		if k != "record-route" {
			hp[k] = v
		}
	}
	return sip.NewParser(sip.WithHeadersParsers(hp))
}

// bufPool holds the buffers messages are encoded into.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuf() *bytes.Buffer {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		bufPool.Put(b)
	}
}

// encodeTo writes msg in wire form to w, always with a correct Content-Length (stream
// transports need it; a datagram may carry it). msg must be the caller's own.
func encodeTo(w *bytes.Buffer, msg sip.Message) {
	if cl := contentLength(msg); cl == nil || int(*cl) != len(msg.Body()) {
		msg.SetBody(msg.Body())
	}
	switch m := msg.(type) {
	case *sip.Request:
		w.WriteString(string(m.Method))
		w.WriteByte(' ')
		writeURI(w, &m.Recipient)
		w.WriteByte(' ')
		w.WriteString(m.SipVersion)
		w.WriteString("\r\n")
		writeHeaders(w, m.Headers())
	case *sip.Response:
		w.WriteString(m.SipVersion)
		w.WriteByte(' ')
		writeInt(w, m.StatusCode)
		w.WriteByte(' ')
		w.WriteString(m.Reason)
		w.WriteString("\r\n")
		writeHeaders(w, m.Headers())
	}
	w.WriteString("\r\n")
	w.Write(msg.Body()) // not sipgo's string(body): no copy
}

// writeHeaders writes each header straight into w (serialize.go).
func writeHeaders(w *bytes.Buffer, hs []sip.Header) {
	for _, h := range hs {
		writeHeader(w, h)
		w.WriteString("\r\n")
	}
}

func contentLength(m sip.Message) *sip.ContentLengthHeader {
	switch v := m.(type) {
	case *sip.Request:
		return v.ContentLength()
	case *sip.Response:
		return v.ContentLength()
	}
	return nil
}

// encode returns msg in wire form (see encodeTo).
func encode(msg sip.Message) []byte {
	b := getBuf()
	encodeTo(b, msg)
	out := bytes.Clone(b.Bytes())
	putBuf(b)
	return out
}

// send writes msg along p. Over UDP and TCP it writes at once and returns the write's
// error; to a peer it queues msg on the peer's link and returns at once (an error only
// when the link takes nothing more). When send returns nil, done (if not nil) is called
// once the message is written (nil) or cannot be (the error): at once over UDP and TCP,
// from the link's writer for a peer — never with a lock of the caller's held, so done may
// take it.
func (b *Bridge) send(p path, msg sip.Message, done func(error)) error {
	err := b.write(p, msg, done)
	if err == nil && done != nil && p.kind != tpP2P {
		done(nil)
	}
	return err
}

// maxDetachedWrites bounds the writes to TCP connections that readers hand off at once.
const maxDetachedWrites = 64

// sendDetached sends msg along p, a TCP path, from a goroutine of its own, for a
// transport's reader that has to send to another connection than its own (a stray 2xx
// from a peer or another UA, forwarded to a UA on TCP): a UA that stops reading holds a
// TCP write until its deadline (writeTimeout), and no reader may wait for it — a peer's
// stream reader would stall every dialog with that peer. Writes are bounded
// (maxDetachedWrites); beyond, msg is dropped (counted), as a datagram lost: the 2xx is
// retransmitted by its sender until the ACK arrives.
func (b *Bridge) sendDetached(p path, msg sip.Message) {
	select {
	case b.detached <- struct{}{}:
	default:
		b.lim.stats.dropped.Add(1)
		b.log.Debug("dropping a forwarded response: too many TCP writes pending", "to", p.String())
		return
	}
	if !b.spawn(func() {
		defer func() { <-b.detached }()
		if err := b.send(p, msg, nil); err != nil {
			b.log.Debug("forwarding over TCP failed", "to", p.String(), "err", err)
		}
	}) {
		<-b.detached
	}
}

func (b *Bridge) write(p path, msg sip.Message, done func(error)) error {
	switch p.kind {
	case tpUDP:
		u := b.udp
		if p.pub && b.pub != nil {
			u = b.pub
		}
		if u == nil {
			return fmt.Errorf("%w: no UDP socket", ErrLinkDown)
		}
		buf := getBuf()
		encodeTo(buf, msg)
		err := u.writeTo(buf.Bytes(), p.addr)
		putBuf(buf)
		return err
	case tpTCP, tpTLS, tpWS, tpWSS:
		c := p.conn
		if c == nil || c.closed() {
			t := b.sendTP(p.kind) // public.go
			if t == nil {
				return fmt.Errorf("%w: no %s listener", ErrLinkDown, p.kind)
			}
			var err error
			if c, err = t.connToName(p.addr, p.name); err != nil {
				return err
			}
		}
		buf := getBuf()
		encodeTo(buf, msg)
		_, err := c.Write(buf.Bytes())
		putBuf(buf)
		return err
	case tpP2P:
		return b.links.send(p.peer, p.addrs, msg, done)
	}
	return fmt.Errorf("%w: no path", ErrLinkDown)
}

// sendBytes writes an encoded message along p (retransmissions over UDP).
func (b *Bridge) sendBytes(p path, data []byte) error {
	if p.kind == tpUDP && p.pub && b.pub != nil {
		return b.pub.writeTo(data, p.addr)
	}
	if p.kind == tpUDP && b.udp != nil {
		return b.udp.writeTo(data, p.addr)
	}
	return nil
}

// pathTo is the path of a request for hop h (a UA): its URI's address, or the source its
// registration came from behind NAT, over the transport either names.
func (b *Bridge) pathTo(h hop) (path, error) {
	if h.peer != "" {
		return path{kind: tpP2P, peer: h.peer, addrs: h.addrs}, nil
	}
	dst, tp := hopDest(h)
	ap, err := b.resolveAddrPort(dst)
	if err != nil {
		return path{}, fmt.Errorf("%w: %s: %w", ErrLinkDown, dst, err)
	}
	return path{kind: kindOf(tp), addr: ap, pub: b.outPublic(h, tp), name: tlsName(h)}, nil // outbound.go
}

// resolveAddrPort turns "host:port" into an address, looking a host name up in DNS
// (bounded by the locator timeout; a UA's contact is nearly always an IP address).
func (b *Bridge) resolveAddrPort(hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", port)
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.locTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolving %s: %v", host, err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(pn)), nil
}
