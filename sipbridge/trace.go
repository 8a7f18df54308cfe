package sipbridge

import (
	"bytes"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TraceEvent is one SIP message a bridge sent or received: over libp2p to
// or from another node (Peer set), or over UDP to or from a user agent (Addr
// set). Tools use it to draw ladder diagrams of calls.
type TraceEvent struct {
	At     time.Time
	Node   peer.ID // the bridge's own node
	Sent   bool    // sent by this node (else received)
	Peer   peer.ID // the other node, for messages between nodes
	Addr   string  // the user agent's address, for UA-facing messages
	First  string  // request line without "SIP/2.0", or status line
	CallID string
}

// WithTrace calls f for every SIP message the bridge sends or receives over
// libp2p and over its UA-facing UDP socket. f runs on the bridge's
// goroutines and must not block; calls can come out of order (a message may be
// reported after its answer): order events by At. Tracing costs nothing when
// unset.
func WithTrace(f func(TraceEvent)) Option { return func(c *config) error { c.trace = f; return nil } }

func (b *Bridge) traceMsg(at time.Time, sent bool, p peer.ID, msg sip.Message) {
	if b.cfg.trace == nil {
		return
	}
	ev := TraceEvent{At: at, Node: b.self, Sent: sent, Peer: p}
	switch m := msg.(type) {
	case *sip.Request:
		ev.First = m.Method.String() + " " + m.Recipient.String()
	case *sip.Response:
		ev.First = strings.TrimPrefix(m.StartLine(), "SIP/2.0 ")
	}
	if id := msg.CallID(); id != nil {
		ev.CallID = id.Value()
	}
	b.cfg.trace(ev)
}

func (b *Bridge) traceRaw(sent bool, addr netip.AddrPort, data []byte) {
	if b.cfg.trace == nil || len(data) == 0 {
		return
	}
	ev := TraceEvent{At: time.Now(), Node: b.self, Sent: sent, Addr: addr.String()}
	first, rest, _ := bytes.Cut(data, []byte("\r\n"))
	first = bytes.TrimSuffix(first, []byte(" SIP/2.0"))
	ev.First = string(bytes.TrimPrefix(first, []byte("SIP/2.0 ")))
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(line) == 0 {
			break
		}
		name, val, ok := bytes.Cut(line, []byte(":"))
		if ok && (bytes.EqualFold(bytes.TrimSpace(name), []byte("Call-ID")) || bytes.EqualFold(bytes.TrimSpace(name), []byte("i"))) {
			ev.CallID = string(bytes.TrimSpace(val))
			break
		}
	}
	b.cfg.trace(ev)
}
