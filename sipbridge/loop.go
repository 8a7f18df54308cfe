package sipbridge

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Loop detection (RFC 3261 §16.3 step 4, §16.6 step 8). Every Via this node adds — the
// overlay Via "SIP/2.0/P2P <peer-id>" and the Via of requests it sends to user agents over
// UDP or TCP — carries a branch "z9hG4bK" + loopTag + 16 hex digits + "." + a random part.
// The hex digits hash this node's peer ID and the fields of the request as received that
// decide where it goes: Request-URI, From and To tags, Call-ID, CSeq number, Route,
// Proxy-Require and Proxy-Authorization (not the top Via, so that a request the node sent
// straight to itself is caught). A request that carries a Via of this node (by peer ID or by
// one of its addresses and port) whose hash equals the request's own has been here in the
// same state: it loops, whatever path brought it back, and is refused with 482. One whose
// hash differs spirals — it came back with another Request-URI or route, as after a
// forwarding step — and is served; Max-Forwards bounds spirals.

const (
	loopTag    = "hs"
	loopKeyLen = 16 // hex digits
)

// loopKey hashes the routing state of req (see above) with this node's identity.
func (b *Bridge) loopKey(req *sip.Request) string {
	h := sha256.New()
	w := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	w(b.selfStr)
	w(req.Recipient.String())
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		w(tag)
	}
	if t := req.To(); t != nil {
		tag, _ := t.Params.Get("tag")
		w(tag)
	}
	if c := req.CallID(); c != nil {
		w(c.Value())
	}
	if c := req.CSeq(); c != nil {
		w(strconv.FormatUint(uint64(c.SeqNo), 10))
	}
	for _, name := range []string{"Route", "Proxy-Require", "Proxy-Authorization"} {
		for _, hv := range req.GetHeaders(name) {
			w(name + ":" + hv.Value())
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:loopKeyLen/2])
}

// branch is the branch of a Via this node adds to the forwarded copy of req.
func (b *Bridge) branch(req *sip.Request) string {
	return branchMagic + loopTag + b.loopKey(req) + "." + sip.GenerateTagN(10)
}

// branchLoopKey returns the loop key in a branch made by branch.
func branchLoopKey(br string) (string, bool) {
	rest, ok := strings.CutPrefix(br, branchMagic+loopTag)
	if !ok || len(rest) < loopKeyLen+1 || rest[loopKeyLen] != '.' {
		return "", false
	}
	return rest[:loopKeyLen], true
}

// isMyVia reports whether v is a Via this node added.
func (b *Bridge) isMyVia(v *sip.ViaHeader) bool {
	if v.Transport == overlayTransport {
		return v.Host == b.selfStr
	}
	return b.addrs.mine(v.Host, v.Port)
}

// looped reports whether req already passed this node in the same state (see above).
func (b *Bridge) looped(req *sip.Request) bool {
	key := ""
	for _, hv := range req.GetHeaders("Via") {
		v, ok := hv.(*sip.ViaHeader)
		if !ok || !b.isMyVia(v) {
			continue
		}
		br, _ := v.Params.Get("branch")
		k, hashed := branchLoopKey(br)
		if !hashed {
			// An overlay Via with this node's peer ID but an unhashed branch: this node,
			// before a restart into this version. A UA-facing address may be another's.
			if v.Transport == overlayTransport {
				return true
			}
			continue
		}
		if key == "" {
			key = b.loopKey(req)
		}
		if k == key {
			return true
		}
	}
	return false
}

// addVia is the sipgo request option that adds this node's Via to a request sent to a user
// agent: the address advertised towards its destination, a loop-detecting branch computed
// from orig (the request as received), rport (RFC 3581).
func (b *Bridge) addVia(orig *sip.Request) sipgo.ClientRequestOption {
	return func(_ *sipgo.Client, r *sip.Request) error {
		tp := strings.ToLower(r.Transport())
		host, port := b.addrs.advertised(tp, r.Destination())
		via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(tp),
			Host: host, Port: port, Params: sip.NewParams()}
		via.Params.Add("branch", b.branch(orig))
		via.Params.Add("rport", "")
		r.PrependHeader(via)
		return nil
	}
}
