package media

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
)

// SessionID names one media session (one m-line of one call) on the wire between two
// nodes. Both end nodes derive it from what both know, the Call-ID and the m-line's index
// (SessionIDOf), so that no negotiation is needed.
type SessionID [8]byte

func (id SessionID) String() string { return hex.EncodeToString(id[:]) }

// SessionIDOf is the session ID of m-line index of the call callID: the first 8 bytes of
// SHA-256(callID "\n" index).
func SessionIDOf(callID string, index int) SessionID {
	h := sha256.Sum256([]byte(callID + "\n" + strconv.Itoa(index)))
	var id SessionID
	copy(id[:], h[:8])
	return id
}

// Frame layout on a media stream, back to back, big-endian:
//
//	length  uint16  bytes after this field: 9 + len(payload)
//	session [8]byte SessionID
//	flags   uint8   bit 0: the packet arrived on (and leaves by) the RTCP port;
//	                bit 1: control traffic (RTCP), kept when the queue sheds audio
//	payload         one RTP or RTCP packet, as the phone sent it (opaque: SRTP passes)
const (
	frameHeader  = 2 + 8 + 1
	flagRTCPPort = 1 << 0
	flagControl  = 1 << 1
	flagsKnown   = flagRTCPPort | flagControl
)

// MaxPacket is the largest RTP or RTCP packet a relay carries; larger datagrams are
// dropped (DropOversize).
const MaxPacket = 8192

// putHeader writes the frame header for a payload of n bytes into b[:frameHeader].
func putHeader(b []byte, id SessionID, flags byte, n int) {
	binary.BigEndian.PutUint16(b, uint16(8+1+n))
	copy(b[2:10], id[:])
	b[10] = flags
}

// isRTCP reports whether p looks like an RTCP packet multiplexed on the RTP port
// (RFC 5761 §4: payload types 64–95 of the RTP header's second byte are RTCP's 192–223).
func isRTCP(p []byte) bool {
	return len(p) >= 2 && p[0]>>6 == 2 && p[1] >= 192 && p[1] <= 223
}
