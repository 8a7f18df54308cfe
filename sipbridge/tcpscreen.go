package sipbridge

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// screenConn is a UA-facing TCP connection as sipgo reads it. It frames the byte stream into
// messages itself (RFC 3261 §18.3, as between nodes: frameReader), with deadlines: the idle
// timeout between messages (keep-alives count), the message timeout from a message's first
// byte to its last. Each message is parsed and validated before sipgo sees it: one that
// parses but is invalid is answered (4xx/505) on the connection and dropped, one that does
// not parse gets 400 where a response can be built (malformedAnswer), and the connection
// stays open for the next message. Only a message that cannot be framed (no or a bad
// Content-Length, a header block over the size limit) or that did not arrive in time ends
// the connection: after the 400, the node stops writing, reads what the client still sends
// for a moment and closes, so that the client gets its answer, not a reset. sipgo then reads
// only whole, valid messages.
type screenConn struct {
	net.Conn
	g   *tcpGuard
	key string
	fr  *frameReader

	pending []byte // the rest of the current message, for sipgo's next Read
	ending  bool   // framing lost: no more messages

	wmu       sync.Mutex
	closeOnce sync.Once
}

func newScreenConn(c net.Conn, g *tcpGuard, key string) *screenConn {
	sc := &screenConn{Conn: c, g: g, key: key}
	sc.fr = newFrameReader(c, g.b.cfg.maxMsg)
	sc.fr.started = func() { _ = c.SetReadDeadline(time.Now().Add(g.b.cfg.conns.MessageTimeout)) }
	return sc
}

// Read hands sipgo the next whole, valid message (or what is left of it).
func (c *screenConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.ending {
			return 0, io.EOF
		}
		data, err := c.next()
		if err != nil {
			return 0, err
		}
		c.pending = data
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write writes under the connection's lock (the node's own answers are written from the
// reader) and with a deadline, so that a client that stops reading cannot hold a sender.
func (c *screenConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.Conn.Write(p)
}

// Close closes the connection and gives its place back, once.
func (c *screenConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.g.count.release(c.key)
		c.g.b.lim.stats.tcpConns.Add(-1)
	})
	return err
}

// next reads messages until one is for sipgo; an error ends the connection.
func (c *screenConn) next() ([]byte, error) {
	b := c.g.b
	from := c.RemoteAddr().String()
	for {
		if err := c.keepalives(); err != nil {
			return nil, c.failed(err, nil)
		}
		data, err := c.fr.next()
		if err != nil {
			var fe *frameError
			var head []byte
			if errors.As(err, &fe) {
				head = fe.head
			}
			return nil, c.failed(err, head)
		}
		if !b.lim.ua.rawAllow(c.key, time.Now()) {
			b.lim.stats.dropped.Add(1)
			continue // over the source's overall budget: dropped unparsed
		}
		msg, err := filterParser.ParseSIP(data)
		if err != nil {
			b.lim.stats.unparsable.Add(1)
			res := malformedAnswer(data)
			b.log.Debug("unparsable message on SIP/TCP", "from", from, "bytes", len(data), "answered", res != nil, "err", err, "data", string(data))
			c.answer(res)
			continue
		}
		if req, ok := msg.(*sip.Request); ok {
			if code, reason := validateRequest(req); code != 0 {
				b.log.Debug("rejected malformed request", "from", from, "status", code, "reason", reason)
				if !req.IsAck() {
					c.answer(answerInvalid(req, code, reason))
				}
				continue
			}
			if normalizeParams(req) {
				data = []byte(req.String())
			}
		}
		return data, nil
	}
}

// keepalives skips the empty lines before a message under the idle deadline, answering a
// double CRLF with a CRLF (RFC 5626 §3.5.1); each keep-alive restarts the idle deadline.
func (c *screenConn) keepalives() error {
	idle := c.g.b.cfg.conns.TCPIdleTimeout
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
// a lingering close. It returns the error for sipgo's reader.
func (c *screenConn) failed(err error, head []byte) error {
	b := c.g.b
	if timedOut(err) {
		b.lim.stats.tcpTimedOut.Add(1)
	}
	if head == nil && (isEOF(err) || timedOut(err)) {
		c.ending = true
		return io.EOF // the client closed, or stayed silent: nothing to answer
	}
	b.log.Debug("closing SIP/TCP connection", "from", c.RemoteAddr().String(), "err", err)
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
	c.ending = true
	return io.EOF
}

// answer writes res (nil: nothing) on the connection.
func (c *screenConn) answer(res []byte) {
	if res == nil {
		return
	}
	if _, err := c.Write(res); err != nil {
		c.g.b.log.Debug("answering on SIP/TCP failed", "from", c.RemoteAddr().String(), "err", err)
	}
}

// lingerTime is how long a connection that lost its framing stays open for the answers to
// the messages before (sipgo's handlers write them) while its input is discarded.
const lingerTime = 2 * time.Second

// linger keeps the connection open for lingerTime, discarding what the client sends, then
// stops writing and reads a little more, so that closing the connection neither cuts the
// answers still being written nor resets it (a reset can destroy an answer before the
// client reads it).
func (c *screenConn) linger() {
	end := time.Now().Add(lingerTime)
	_ = c.Conn.SetReadDeadline(end)
	if _, err := io.CopyN(io.Discard, c.fr.r, 1<<20); isEOF(err) || err == nil {
		t := time.NewTimer(time.Until(end)) // the client stopped sending: the answers may not be out yet
		select {
		case <-t.C:
		case <-c.g.b.ctx.Done():
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
