package sipbridge

import (
	"bytes"
	"log/slog"
	"net"

	"github.com/emiago/sipgo/sip"
)

// filterConn screens datagrams on the UA-facing UDP socket before sipgo's transaction layer
// sees them: a request that parses but fails validateRequest is answered (4xx/505) straight
// to its source and dropped, since sipgo would otherwise answer to an address taken from the
// malformed message itself, or not at all.
//
// It also sees requests in arrival order, before sipgo hands each to a goroutine of its
// own, and reports them (arrived) so that one dialog's requests keep their order.
type filterConn struct {
	net.PacketConn
	log     *slog.Logger
	arrived func(*sip.Request)
	order   *respOrder // keeps a transaction's responses in order; may be nil
	b       *Bridge    // for tracing; may be nil
}

func (c *filterConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err == nil && c.b != nil && !c.b.admitDatagram(b[:n], addr, c.PacketConn) {
			continue // answered 503 or dropped: over the source's rate
		}
		var drop bool
		if err == nil && n > 0 {
			var repl []byte
			if drop, repl = c.reject(b[:n], addr); repl != nil && len(repl) <= len(b) {
				n = copy(b, repl) // see normalizeParams
			}
		}
		if !drop {
			if err == nil && c.b != nil {
				c.b.traceRaw(false, addr, b[:n])
			}
			if err == nil && c.order != nil {
				c.order.read(b[:n])
			}
			return n, addr, err
		}
	}
}

// WriteTo writes to the socket, tracing what it sends.
func (c *filterConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.b != nil {
		c.b.traceRaw(true, addr, b) // before the write: the answer can be read before it returns
	}
	return c.PacketConn.WriteTo(b, addr)
}

// filterParser parses only the headers that validateRequest and onArrival read into
// structures (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length); the others stay
// generic headers holding their raw text. sipgo parses every datagram again, fully, after
// the filter: parsing Contact, Route and Record-Route twice cost CPU for nothing.
var filterParser = func() *sip.Parser {
	all := sip.DefaultHeadersParser()
	some := map[string]sip.HeaderParser{}
	for _, k := range []string{"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "max-forwards", "content-length", "l"} {
		some[k] = all[k]
	}
	return sip.NewParser(sip.WithHeadersParsers(some))
}()

// reject answers and returns true when data is an invalid request, or no SIP message at all
// (answered 400 when a response can be built, see malformedAnswer). A valid request that
// sipgo would misread comes back rewritten (repl, see normalizeParams).
func (c *filterConn) reject(data []byte, addr net.Addr) (drop bool, repl []byte) {
	if len(bytes.TrimSpace(data)) == 0 || bytes.HasPrefix(data, []byte("SIP/")) {
		return false, nil
	}
	msg, err := filterParser.ParseSIP(data)
	if err != nil {
		c.unparsable(data, addr, err)
		return true, nil
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return false, nil
	}
	code, reason := validateRequest(req)
	if code == 0 {
		if normalizeParams(req) {
			repl = []byte(req.String())
		}
		if c.arrived != nil {
			c.arrived(req)
		}
		return false, repl
	}
	if !req.IsAck() {
		if _, err := c.PacketConn.WriteTo(answerInvalid(req, code, reason), addr); err != nil {
			c.log.Debug("rejecting malformed request failed", "err", err)
		}
	}
	c.log.Debug("rejected malformed request", "from", addr, "status", code, "reason", reason)
	return true, nil
}

// unparsable answers (when it can) and drops a datagram sipgo's parser refuses: sipgo would
// drop it too, after logging it at ERROR with the whole payload.
func (c *filterConn) unparsable(data []byte, addr net.Addr, err error) {
	res := malformedAnswer(data)
	if res != nil {
		if _, werr := c.PacketConn.WriteTo(res, addr); werr != nil {
			c.log.Debug("answering unparsable request failed", "from", addr, "err", werr)
		}
	}
	if c.b != nil {
		c.b.lim.stats.unparsable.Add(1)
	}
	c.log.Debug("unparsable datagram", "from", addr, "bytes", len(data), "answered", res != nil, "err", err, "data", string(data))
}
