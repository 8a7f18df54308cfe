package sipbridge

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"time"
)

// udpTransport is the UA-facing UDP socket. One goroutine reads it, in arrival order:
// each datagram spends its source's raw budget, is parsed once with sipgo's parser and
// handed to the admission chain; what does not parse is answered 400 where a response can
// be built (malformed.go) and dropped, never logged whole above debug level. Writes go
// straight to the socket, from whichever goroutine sends; a message larger than a
// datagram's usual 1300 bytes (inter-domain INVITEs carry several Vias, Record-Routes and
// a softphone's SDP) goes as one datagram that IP fragments, as Kamailio sends it — the
// transport has no MTU setting of its own and changes none of sipgo's.
type udpTransport struct {
	b    *Bridge
	conn *net.UDPConn
	port int
	pub  bool // the public socket of ordinary SIP servers (public.go)
}

// maxUDPPayload is the largest UDP datagram payload (IPv4).
const maxUDPPayload = 65507

func newUDPTransport(b *Bridge, conn *net.UDPConn) *udpTransport {
	return &udpTransport{b: b, conn: conn, port: conn.LocalAddr().(*net.UDPAddr).Port}
}

// serve reads the socket until it is closed.
func (t *udpTransport) serve() {
	b := t.b
	buf := make([]byte, maxUDPPayload+1)
	var key string
	var keyOf netip.Addr
	for {
		n, ap, err := t.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || b.ctx.Err() != nil {
				return
			}
			b.log.Debug("udp read failed", "err", err)
			continue
		}
		data := buf[:n]
		if len(bytes.Trim(data, "\x00\r\n ")) == 0 {
			continue // a keep-alive (CRLF, RFC 5626) or padding
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if ip := ap.Addr(); ip != keyOf || key == "" { // one source sends in bursts: reuse its key
			key, keyOf = addrKey(ip), ip
		}
		now := time.Now()
		if !b.lim.ua.rawAllow(key, now) {
			b.lim.stats.dropped.Add(1)
			continue
		}
		b.traceRaw(false, ap, data)
		msg, err := b.parser.ParseSIP(data)
		if err != nil {
			t.unparsable(data, ap, err)
			continue
		}
		msg.SetTransport("UDP")
		msg.SetSource(ap.String())
		if t.pub {
			msg.SetDestination(b.pubShow) // public.go: isPublic
		}
		b.receive(newInbound(msg, path{kind: tpUDP, addr: ap, pub: t.pub}, key, now))
	}
}

// writeTo sends one datagram.
func (t *udpTransport) writeTo(data []byte, to netip.AddrPort) error {
	t.b.traceRaw(true, to, data) // before the write: the answer can be read before it returns
	_, err := t.conn.WriteToUDPAddrPort(data, to)
	return err
}

// unparsable answers (when it can) and drops a datagram sipgo's parser refuses.
func (t *udpTransport) unparsable(data []byte, from netip.AddrPort, err error) {
	b := t.b
	res := malformedAnswer(data)
	if res != nil {
		if werr := t.writeTo(res, from); werr != nil {
			b.log.Debug("answering unparsable request failed", "from", from.String(), "err", werr)
		}
	}
	b.lim.stats.unparsable.Add(1)
	b.log.Debug("unparsable datagram", "from", from.String(), "bytes", len(data), "answered", res != nil, "err", err, "data", string(data))
}

func (t *udpTransport) close() error { return t.conn.Close() }
