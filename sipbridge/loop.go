package sipbridge

import (
	"hash/maphash"
	"math/rand/v2"
	"strings"

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

// loopKey hashes the routing state of req (see above) with this node's identity: 16 hex
// digits of a 64-bit maphash under a seed of the bridge's own (an outsider cannot make a
// request collide with a key, and two nodes never share keys).
func (b *Bridge) loopKey(req *sip.Request) string {
	var out [loopKeyLen]byte
	return string(b.appendLoopKey(out[:0], req))
}

func (b *Bridge) appendLoopKey(dst []byte, req *sip.Request) []byte {
	w := getBuf()
	field := func(s string) {
		w.WriteString(s)
		w.WriteByte(0)
	}
	field(b.selfStr)
	writeURI(w, &req.Recipient)
	w.WriteByte(0)
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		field(tag)
	}
	if t := req.To(); t != nil {
		tag, _ := t.Params.Get("tag")
		field(tag)
	}
	if c := req.CallID(); c != nil {
		field(string(*c))
	}
	if c := req.CSeq(); c != nil {
		writeInt(w, int(c.SeqNo))
		w.WriteByte(0)
	}
	for _, hv := range req.Headers() {
		switch n := hv.Name(); {
		case strings.EqualFold(n, "Route"), strings.EqualFold(n, "Proxy-Require"), strings.EqualFold(n, "Proxy-Authorization"):
			writeHeader(w, hv)
			w.WriteByte(0)
		}
	}
	sum := maphash.Bytes(b.loopSeed, w.Bytes())
	putBuf(w)
	const digits = "0123456789abcdef"
	for i := loopKeyLen - 1; i >= 0; i-- {
		dst = append(dst, digits[(sum>>(4*uint(i)))&0xf])
	}
	return dst
}

// branch is the branch of a Via this node adds to the forwarded copy of req.
func (b *Bridge) branch(req *sip.Request) string {
	var buf [len(branchMagic) + len(loopTag) + loopKeyLen + 1 + 12]byte
	out := append(buf[:0], branchMagic...)
	out = append(out, loopTag...)
	out = b.appendLoopKey(out, req)
	out = append(out, '.')
	r := rand.Uint64()
	const digits = "0123456789abcdefghijklmnopqrstuv" // 5 bits a character
	for range 12 {
		out = append(out, digits[r&31])
		r >>= 5
	}
	return string(out)
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
	for _, hv := range req.Headers() {
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
