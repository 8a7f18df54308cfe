package sipbridge

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// SIP over WebSocket (RFC 7118), with gobwas/ws (the library sipgo's own WS transport
// uses) for the handshake and the frames. A connection is upgraded within the message
// timeout, only for a client that offers the "sip" subprotocol (RFC 7118 §4.1: others
// get 400 from the handshake). Each SIP message is one WebSocket message (text or binary,
// possibly fragmented, at most the message size limit together); control frames are
// answered as RFC 6455 says (pong, close) under the connection's write lock. The node
// pings every WebSocket connection at a third of the idle timeout, so that a browser that
// only re-registers every ten minutes keeps its connection (browsers answer pings
// themselves); a pong, like any frame, restarts the idle deadline. A message of only
// whitespace is a keep-alive.
//
// What the node writes is one unmasked text frame per message (server side).

// wsSubprotocol is the WebSocket subprotocol of SIP (RFC 7118 §4.1).
const wsSubprotocol = "sip"

// serveWS upgrades the connection and reads its messages until it ends.
func (c *tcpConn) serveWS() {
	b := c.t.b
	mt := b.cfg.conns.MessageTimeout
	_ = c.Conn.SetDeadline(time.Now().Add(mt))
	offered := false
	u := ws.Upgrader{
		Protocol: func(p []byte) bool {
			if string(p) == wsSubprotocol {
				offered = true
				return true
			}
			return false
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if !offered {
				return nil, ws.RejectConnectionError(ws.RejectionStatus(400), ws.RejectionReason("the sip subprotocol is required (RFC 7118)"))
			}
			return nil, nil
		},
	}
	if _, err := u.Upgrade(c.Conn); err != nil {
		b.log.Debug("WebSocket handshake failed", "transport", c.t.kind.String(), "from", c.raddr.String(), "err", err)
		return
	}
	_ = c.Conn.SetDeadline(time.Time{})
	c.wmu.Lock()
	c.ws = true
	c.wmu.Unlock()

	ctl := wsutil.ControlHandler{Dst: wsLocked{c}, State: ws.StateServerSide, DisableSrcCiphering: true}
	rd := &wsutil.Reader{Source: c.Conn, State: ws.StateServerSide, MaxFrameSize: int64(b.cfg.maxMsg)}
	rd.OnIntermediate = func(h ws.Header, r io.Reader) error {
		ctl.Src = r
		return ctl.Handle(h)
	}
	idle := b.cfg.conns.TCPIdleTimeout
	var msg bytes.Buffer
	for {
		_ = c.Conn.SetReadDeadline(time.Now().Add(idle))
		h, err := rd.NextFrame()
		if err != nil {
			c.wsFailed(err)
			return
		}
		if h.OpCode.IsControl() {
			ctl.Src = rd
			if err := ctl.Handle(h); err != nil {
				c.wsFailed(err)
				return
			}
			continue
		}
		_ = c.Conn.SetReadDeadline(time.Now().Add(mt))
		msg.Reset()
		n, err := msg.ReadFrom(io.LimitReader(rd, int64(b.cfg.maxMsg)+1))
		if err != nil {
			c.wsFailed(err)
			return
		}
		if n > int64(b.cfg.maxMsg) {
			b.lim.stats.unparsable.Add(1)
			c.wsClose(ws.StatusMessageTooBig, "message too large")
			return
		}
		data := msg.Bytes()
		if len(bytes.TrimSpace(data)) == 0 {
			continue // a keep-alive
		}
		now := time.Now()
		if !b.lim.ua.rawAllow(c.key, now) {
			b.lim.stats.dropped.Add(1)
			continue
		}
		m, err := b.parser.ParseSIP(data)
		if err != nil {
			b.lim.stats.unparsable.Add(1)
			b.log.Debug("unparsable message on SIP/WebSocket", "from", c.raddr.String(), "bytes", len(data), "err", err)
			c.answer(malformedAnswer(data))
			continue
		}
		m.SetTransport(c.t.kind.String())
		m.SetSource(c.raddr.String())
		in := &inbound{from: path{kind: c.t.kind, addr: c.raddr, conn: c}, key: c.key, at: now}
		switch v := m.(type) {
		case *sip.Request:
			in.req = v
		case *sip.Response:
			in.res = v
		}
		b.receive(in)
	}
}

// wsFailed ends a WebSocket connection after err.
func (c *tcpConn) wsFailed(err error) {
	b := c.t.b
	var closed wsutil.ClosedError
	switch {
	case timedOut(err):
		b.lim.stats.tcpTimedOut.Add(1)
	case errors.As(err, &closed), isEOF(err), errors.Is(err, io.EOF):
	case errors.Is(err, wsutil.ErrFrameTooLarge):
		c.wsClose(ws.StatusMessageTooBig, "message too large")
	default:
		b.log.Debug("closing SIP/WebSocket connection", "from", c.raddr.String(), "err", err)
		c.wsClose(ws.StatusProtocolError, "")
	}
}

// wsClose sends a close frame (best effort).
func (c *tcpConn) wsClose(code ws.StatusCode, reason string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = ws.WriteFrame(c.Conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
}

// writeWS writes p as one text frame; c.wmu is held.
func (c *tcpConn) writeWS(p []byte) (int, error) {
	if err := ws.WriteHeader(c.Conn, ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(p))}); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// wsLocked writes control frames (pongs, close) under the connection's write lock.
type wsLocked struct{ c *tcpConn }

func (w wsLocked) Write(p []byte) (int, error) {
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	_ = w.c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return w.c.Conn.Write(p)
}

// pingWS pings every upgraded connection of a WebSocket transport at a third of the idle
// timeout, until the bridge closes: one goroutine per transport.
func (t *tcpTransport) pingWS() {
	b := t.b
	every := b.cfg.conns.TCPIdleTimeout / 3
	tk := time.NewTicker(every)
	defer tk.Stop()
	ping := ws.MustCompileFrame(ws.NewPingFrame(nil))
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-tk.C:
		}
		t.mu.Lock()
		l := slices.Collect(maps.Values(t.conns))
		t.mu.Unlock()
		for _, c := range l {
			c.wmu.Lock()
			if c.ws && !c.closed() {
				_ = c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
				if _, err := c.Conn.Write(ping); err != nil {
					b.log.Debug("WebSocket ping failed", "to", c.raddr.String(), "err", err)
				}
			}
			c.wmu.Unlock()
		}
	}
}

// invalidHost reports whether host is a made-up name under the reserved .invalid TLD (RFC
// 2606), as WebSocket clients put in their Contact and Via (RFC 7118 §5.2): a contact
// reached only on the connection it registered on, never looked up as a domain.
func invalidHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	return h == "invalid" || strings.HasSuffix(h, ".invalid")
}
