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
		if err != nil || n == 0 || !c.reject(b[:n], addr) {
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

// reject answers and returns true when data is an invalid request.
func (c *filterConn) reject(data []byte, addr net.Addr) bool {
	if len(bytes.TrimSpace(data)) == 0 || bytes.HasPrefix(data, []byte("SIP/")) {
		return false
	}
	msg, err := filterParser.ParseSIP(data)
	if err != nil {
		return false // sipgo drops what it cannot parse
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return false
	}
	code, reason := validateRequest(req)
	if code == 0 {
		if c.arrived != nil {
			c.arrived(req)
		}
		return false
	}
	if !req.IsAck() {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		if to := res.To(); to != nil && !hasTag(to) {
			to.Params.Add("tag", sip.GenerateTagN(16))
		}
		if _, err := c.PacketConn.WriteTo([]byte(res.String()), addr); err != nil {
			c.log.Debug("rejecting malformed request failed", "err", err)
		}
	}
	c.log.Debug("rejected malformed request", "from", addr, "status", code, "reason", reason)
	return true
}
