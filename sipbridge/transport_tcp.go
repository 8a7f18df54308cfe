package sipbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// tcpTransport is the UA-facing TCP listener and its connections. The accept loop refuses
// connections beyond the caps (conncap.go) and survives running out of file descriptors;
// each connection has a reader that frames the byte stream into messages itself (RFC 3261
// §18.3, as between nodes: frameReader), with deadlines — the idle timeout between
// messages (keep-alives count), the message timeout from a message's first byte to its
// last — parses each message once and hands it to the admission chain. One that does not
// parse gets 400 where a response can be built (malformedAnswer) and the connection stays
// open for the next. Only a message that cannot be framed (no or a bad Content-Length, a
// header block over the size limit) or that did not arrive in time ends the connection:
// after the 400, the node stops writing, reads what the client still sends for a moment
// and closes, so that the client gets its answer, not a reset.
//
// Connections are kept by remote address: responses go back on the connection a request
// came on, and requests for a UA behind NAT that registered over TCP go on its own
// connection while it is open (RFC 5626 flow reuse). A request for a UA with no
// connection opens one (dialled with the dial timeout).
type tcpTransport struct {
	b     *Bridge
	ln    net.Listener
	count *counter
	port  int
	// kind is tpTCP, or tpTLS, tpWS, tpWSS for the transports of transport_tls.go and
	// transport_ws.go, with serverTLS (TLS, WSS) and clientTLS (TLS: dialling UAs).
	kind                 tpKind
	serverTLS, clientTLS *tls.Config
	show                 string // the bound address as configured (TLSAddr, ...)
	pub                  bool   // the public listener of ordinary SIP servers (public.go)

	mu    sync.Mutex
	conns map[netip.AddrPort]*tcpConn
}

func newTCPTransport(b *Bridge, ln net.Listener) *tcpTransport {
	max := tcpCap(b.cfg.conns.MaxTCP, nofileLimit())
	return &tcpTransport{b: b, ln: ln, count: newCounter(b.cfg.conns.MaxTCPPerSource, max),
		port: ln.Addr().(*net.TCPAddr).Port, conns: map[netip.AddrPort]*tcpConn{}, kind: tpTCP}
}

// serve accepts connections until the listener is closed.
func (t *tcpTransport) serve() {
	b := t.b
	backoff := 5 * time.Millisecond
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if !temporaryAccept(err) || b.ctx.Err() != nil {
				if b.ctx.Err() == nil {
					b.log.Warn("sip listener stopped", "err", err)
				}
				return
			}
			// Out of file descriptors (or a connection aborted before accept): wait and
			// go on, as net/http does; the connections that hold them time out.
			b.log.Warn("accepting SIP connection failed, retrying", "transport", t.kind.String(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-b.ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		ra := tcpAddrPort(c.RemoteAddr())
		key := addrKey(ra.Addr())
		if why := t.count.take(key); why != "" {
			b.lim.stats.tcpRefused.Add(1)
			b.log.Info("refusing SIP connection", "transport", t.kind.String(), "from", c.RemoteAddr().String(), "cap", why)
			_ = c.Close()
			continue
		}
		b.lim.stats.tcpConns.Add(1)
		if t.serverTLS != nil {
			c = tls.Server(c, t.serverTLS) // the handshake runs in the connection's goroutine
		}
		tc := t.add(c, ra, key, true)
		if !b.spawn(tc.serve) {
			_ = tc.Close()
			return
		}
	}
}

func tcpAddrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (t *tcpTransport) add(c net.Conn, ra netip.AddrPort, key string, counted bool) *tcpConn {
	tc := &tcpConn{t: t, Conn: c, raddr: ra, key: key, counted: counted, done: make(chan struct{})}
	tc.fr = newFrameReader(c, t.b.cfg.maxMsg)
	tc.fr.started = func() { _ = c.SetReadDeadline(time.Now().Add(t.b.cfg.conns.MessageTimeout)) }
	t.mu.Lock()
	t.conns[ra] = tc
	t.mu.Unlock()
	return tc
}

func (t *tcpTransport) remove(tc *tcpConn) {
	t.mu.Lock()
	if t.conns[tc.raddr] == tc {
		delete(t.conns, tc.raddr)
	}
	t.mu.Unlock()
}

// conn returns the open connection from or to addr, or nil.
func (t *tcpTransport) conn(addr netip.AddrPort) *tcpConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conns[addr]
}

// connTo returns the connection to addr, dialling one when there is none.
func (t *tcpTransport) connTo(addr netip.AddrPort) (*tcpConn, error) { return t.connToName(addr, "") }

// connToName is connTo; a TLS connection it opens verifies name (the SIP domain of a
// server outside the overlay; "" the address).
func (t *tcpTransport) connToName(addr netip.AddrPort, name string) (*tcpConn, error) {
	if c := t.conn(addr); c != nil && !c.closed() {
		return c, nil
	}
	b := t.b
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.dialTimeout)
	defer cancel()
	var c net.Conn
	var err error
	switch t.kind {
	case tpWS, tpWSS:
		return nil, fmt.Errorf("%w: no WebSocket connection from %s (the node opens none)", ErrLinkDown, addr)
	case tpTLS:
		c, err = t.dialTLS(ctx, addr, name)
	default:
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr.String())
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrLinkDown, t.kind, addr, err)
	}
	tc := t.add(c, addr, addrKey(addr.Addr()), false)
	if !b.spawn(tc.serve) {
		_ = tc.Close()
		return nil, ErrClosed
	}
	return tc, nil
}

// close closes the listener and every connection.
func (t *tcpTransport) close() {
	_ = t.ln.Close()
	t.mu.Lock()
	l := slices.Collect(maps.Values(t.conns))
	t.mu.Unlock()
	for _, c := range l {
		_ = c.Close()
	}
}

// tcpConn is one UA-facing TCP connection.
type tcpConn struct {
	net.Conn
	t       *tcpTransport
	raddr   netip.AddrPort
	key     string
	counted bool // accepted: holds a place of the caps
	fr      *frameReader

	wmu       sync.Mutex
	ws        bool // a WebSocket connection whose upgrade is done: writes are frames
	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

func (c *tcpConn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Write writes under the connection's lock and with a deadline, so that a client that
// stops reading cannot hold a sender longer.
func (c *tcpConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if c.ws {
		return c.writeWS(p) // transport_ws.go
	}
	return c.Conn.Write(p)
}

// Close closes the connection and gives its place back, once.
func (c *tcpConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		close(c.done)
		c.t.remove(c)
		if c.counted {
			c.t.count.release(c.key)
			c.t.b.lim.stats.tcpConns.Add(-1)
		}
	})
	return err
}

// serve reads messages until the connection ends.
func (c *tcpConn) serve() {
	defer c.Close()
	b := c.t.b
	if c.t.serverTLS != nil && c.counted {
		if c.handshake() != nil { // transport_tls.go
			return
		}
	}
	if c.t.kind == tpWS || c.t.kind == tpWSS {
		c.serveWS() // transport_ws.go
		return
	}
	for {
		if err := c.keepalives(); err != nil {
			c.failed(err, nil)
			return
		}
		data, err := c.fr.next()
		if err != nil {
			var fe *frameError
			var head []byte
			if errors.As(err, &fe) {
				head = fe.head
			}
			c.failed(err, head)
			return
		}
		now := time.Now()
		if !b.lim.ua.rawAllow(c.key, now) {
			b.lim.stats.dropped.Add(1)
			continue // over the source's overall budget: dropped unparsed
		}
		msg, err := b.parser.ParseSIP(data)
		if err != nil {
			b.lim.stats.unparsable.Add(1)
			res := malformedAnswer(data)
			b.log.Debug("unparsable message on SIP/TCP", "from", c.raddr.String(), "bytes", len(data), "answered", res != nil, "err", err, "data", string(data))
			c.answer(res)
			continue
		}
		msg.SetTransport(c.t.kind.String())
		msg.SetSource(c.raddr.String())
		if c.t.pub {
			msg.SetDestination(c.t.show) // public.go: isPublic
		}
		b.receive(newInbound(msg, path{kind: c.t.kind, addr: c.raddr, conn: c, pub: c.t.pub}, c.key, now))
	}
}

// keepalives skips the empty lines before a message under the idle deadline, answering a
// double CRLF with a CRLF (RFC 5626 §3.5.1); each keep-alive restarts the idle deadline.
func (c *tcpConn) keepalives() error {
	idle := c.t.b.cfg.conns.TCPIdleTimeout
	_ = c.Conn.SetReadDeadline(time.Now().Add(idle))
	crlf := 0
	for {
		ch, err := c.fr.r.ReadByte()
		if err != nil {
			return err
		}
		if ch != '\r' && ch != '\n' {
			return c.fr.r.UnreadByte()
		}
		if crlf++; crlf == 4 {
			crlf = 0
			if _, err := c.Write([]byte("\r\n")); err != nil {
				return err
			}
			_ = c.Conn.SetReadDeadline(time.Now().Add(idle))
		}
	}
}

// failed ends the connection after err: a 400 when the header block (head) allows one, then
// a lingering close.
func (c *tcpConn) failed(err error, head []byte) {
	b := c.t.b
	if timedOut(err) {
		b.lim.stats.tcpTimedOut.Add(1)
	}
	if head == nil && (isEOF(err) || timedOut(err) || errors.Is(err, net.ErrClosed)) {
		return // the client closed, or stayed silent: nothing to answer
	}
	b.log.Debug("closing SIP/TCP connection", "from", c.raddr.String(), "err", err)
	if head != nil {
		var res []byte
		if m, perr := rawParserFrame(head); perr == nil {
			if req, ok := m.(*sip.Request); ok && !req.IsAck() {
				res = answerInvalid(req, 400, "Bad Request: "+framingReason(err))
			}
		} else {
			res = malformedAnswer(head)
		}
		c.answer(res)
	}
	c.linger()
}

// answer writes res (nil: nothing) on the connection.
func (c *tcpConn) answer(res []byte) {
	if res == nil {
		return
	}
	if _, err := c.Write(res); err != nil {
		c.t.b.log.Debug("answering on SIP/TCP failed", "from", c.raddr.String(), "err", err)
	}
}

// lingerTime is how long a connection that lost its framing stays open for the answers to
// the messages before while its input is discarded.
const lingerTime = 2 * time.Second

// linger keeps the connection open for lingerTime, discarding what the client sends, then
// stops writing and reads a little more, so that closing the connection neither cuts the
// answers still being written nor resets it (a reset can destroy an answer before the
// client reads it).
func (c *tcpConn) linger() {
	end := time.Now().Add(lingerTime)
	_ = c.Conn.SetReadDeadline(end)
	if _, err := io.CopyN(io.Discard, c.fr.r, 1<<20); isEOF(err) || err == nil {
		t := time.NewTimer(time.Until(end)) // the client stopped sending: the answers may not be out yet
		select {
		case <-t.C:
		case <-c.t.b.ctx.Done():
			t.Stop()
		}
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		c.wmu.Lock()
		_ = cw.CloseWrite()
		c.wmu.Unlock()
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, _ = io.CopyN(io.Discard, c.fr.r, 256<<10)
}

// rawParserFrame parses the header block of a message that could not be framed, with its
// Content-Length replaced by 0.
func rawParserFrame(head []byte) (sip.Message, error) { return parseFrame(withoutLength(head)) }

// framingReason is the reason phrase for a framing failure.
func framingReason(err error) string {
	switch {
	case timedOut(err):
		return "message incomplete (timed out)"
	case errors.Is(err, ErrTooLarge):
		return "message too large"
	case isEOF(err):
		return "message incomplete"
	case errors.Is(err, ErrFraming):
		switch msg := err.Error(); {
		case strings.Contains(msg, "no Content-Length"):
			return "missing Content-Length"
		case strings.Contains(msg, "invalid Content-Length"):
			return "invalid Content-Length"
		}
		return "message incomplete"
	}
	return "malformed message"
}

// tcpConn returns the open TCP connection from addr, or nil.
func (b *Bridge) tcpConn(addr netip.AddrPort) *tcpConn {
	if b.tcp == nil {
		return nil
	}
	if c := b.tcp.conn(addr); c != nil && !c.closed() {
		return c
	}
	return nil
}
