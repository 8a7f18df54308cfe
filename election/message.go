package election

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
)

// Wire limits. Decode rejects anything outside them.
const (
	MaxMessageSize = 8 << 10 // bytes of one encoded message
	MaxListed      = 64      // members in Roster plus Spares
	// MaxEpoch bounds epochs: a message with a higher one is refused, and
	// the election saturates there instead of wrapping (domains.MaxEpoch).
	MaxEpoch = domains.MaxEpoch
	// MaxEndorseSize bounds an endorsement signature.
	MaxEndorseSize = 128
)

// MsgType is the kind of an election message.
type MsgType uint8

// Message types.
const (
	// MsgAnnounce is broadcast by the leading proxy every HelloInterval and
	// whenever the roster changes: epoch, roster, spares, bid floor.
	MsgAnnounce MsgType = iota + 1
	// MsgHello is sent by a proxy or candidate to the leading proxy every
	// HelloInterval (draft §6.3), on /hiersip/hello/1.0.0.
	MsgHello
	// MsgHelloAck answers a Hello; it carries the same fields as an Announce.
	MsgHelloAck
	// MsgBid offers the sender as proxy or candidate. It is broadcast while
	// there is no proxy and sent to the leading proxy otherwise.
	MsgBid
	// MsgHandoff is sent by a leaving leader to its successor; it carries the
	// new epoch and roster, whose first member is the successor.
	MsgHandoff
)

// String returns the type's name.
func (t MsgType) String() string {
	switch t {
	case MsgAnnounce:
		return "announce"
	case MsgHello:
		return "hello"
	case MsgHelloAck:
		return "hello-ack"
	case MsgBid:
		return "bid"
	case MsgHandoff:
		return "handoff"
	default:
		return fmt.Sprintf("msgtype(%d)", uint8(t))
	}
}

// Message is an election message. Which fields are set depends on Type.
type Message struct {
	Type  MsgType
	From  peer.ID // the author; the runner checks it against the transport
	Epoch uint64  // the sender's epoch (term)
	// Utility is the sender's utility (Hello, Bid).
	Utility float64
	// Roster lists the proxies, leader first, then the candidates in rank
	// order (Announce, HelloAck, Handoff).
	Roster []Member
	// Spares are live bidders the leader will promote to candidate next.
	Spares []Member
	// Floor is the utility a peer must exceed to bid (Announce, HelloAck).
	Floor float64
	// Leaving marks a Hello from a member that leaves the roster.
	Leaving bool
	// Seq is the sender's message number: microseconds of its clock,
	// increasing. Receivers drop a message whose Seq is not above the last
	// they took from the sender (replays).
	Seq uint64
	// Cert is the sender's certificate in an enrolled domain.
	Cert []byte
	// Endorse is the sender's endorsement (domains.Endorse) of the leader it
	// follows at Epoch (Hello), or of its successor at Epoch (Handoff).
	Endorse []byte

	// Observed is set by the runner, never sent: Roster[0]'s utility is what
	// this node observed of it (a direct neighbour), not its claim.
	Observed bool
}

// Outgoing is a message the core wants sent. To is empty for a broadcast to
// the domain.
type Outgoing struct {
	To      peer.ID
	Message Message
}

type wireMember struct {
	ID string  `json:"i"`
	U  float64 `json:"u"`
}

type wireMessage struct {
	V  uint8        `json:"v"`
	T  MsgType      `json:"t"`
	F  string       `json:"f"`
	E  uint64       `json:"e,omitempty"`
	U  float64      `json:"u,omitempty"`
	R  []wireMember `json:"r,omitempty"`
	S  []wireMember `json:"s,omitempty"`
	Fl float64      `json:"fl,omitempty"`
	L  bool         `json:"l,omitempty"`
	Q  uint64       `json:"q,omitempty"`
	C  []byte       `json:"c,omitempty"`
	N  []byte       `json:"n,omitempty"`
}

const wireVersion = 1

// Encode returns the wire form of m (compact JSON). It fails if m is invalid.
func Encode(m Message) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	w := wireMessage{V: wireVersion, T: m.Type, F: m.From.String(), E: m.Epoch,
		U: m.Utility, Fl: m.Floor, L: m.Leaving, Q: m.Seq, C: m.Cert, N: m.Endorse}
	for _, x := range m.Roster {
		w.R = append(w.R, wireMember{ID: x.ID.String(), U: x.Utility})
	}
	for _, x := range m.Spares {
		w.S = append(w.S, wireMember{ID: x.ID.String(), U: x.Utility})
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(b), MaxMessageSize)
	}
	return b, nil
}

// Decode parses and validates a message. It returns an error wrapping
// ErrMessageTooLarge or ErrBadMessage; it never panics on any input.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxMessageSize {
		return Message{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(b), MaxMessageSize)
	}
	var w wireMessage
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&w); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if d.More() {
		return Message{}, fmt.Errorf("%w: trailing data", ErrBadMessage)
	}
	if w.V != wireVersion {
		return Message{}, fmt.Errorf("%w: version %d", ErrBadMessage, w.V)
	}
	if len(w.R)+len(w.S) > MaxListed {
		return Message{}, fmt.Errorf("%w: %d listed members, limit %d", ErrBadMessage, len(w.R)+len(w.S), MaxListed)
	}
	from, err := peer.Decode(w.F)
	if err != nil {
		return Message{}, fmt.Errorf("%w: from: %v", ErrBadMessage, err)
	}
	m := Message{Type: w.T, From: from, Epoch: w.E, Utility: w.U, Floor: w.Fl, Leaving: w.L,
		Seq: w.Q, Cert: w.C, Endorse: w.N}
	conv := func(in []wireMember) ([]Member, error) {
		if len(in) == 0 {
			return nil, nil
		}
		out := make([]Member, 0, len(in))
		for _, x := range in {
			id, err := peer.Decode(x.ID)
			if err != nil {
				return nil, fmt.Errorf("%w: member: %v", ErrBadMessage, err)
			}
			out = append(out, Member{ID: id, Utility: x.U})
		}
		return out, nil
	}
	if m.Roster, err = conv(w.R); err != nil {
		return Message{}, err
	}
	if m.Spares, err = conv(w.S); err != nil {
		return Message{}, err
	}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

func validUtility(u float64) bool {
	return !math.IsNaN(u) && u >= NotEligible && u < MaxUtility
}

// Validate checks the fields of m for its type. The error wraps ErrBadMessage.
func (m Message) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrBadMessage, m.Type, fmt.Sprintf(format, args...))
	}
	if m.From == "" {
		return bad("no sender")
	}
	if !validUtility(m.Utility) || !validUtility(m.Floor) {
		return bad("utility out of range")
	}
	if len(m.Roster)+len(m.Spares) > MaxListed {
		return bad("%d listed members, limit %d", len(m.Roster)+len(m.Spares), MaxListed)
	}
	if m.Epoch > MaxEpoch {
		return fmt.Errorf("%w: %s: %w: %d above %d", ErrBadMessage, m.Type, ErrBadEpoch, m.Epoch, uint64(MaxEpoch))
	}
	if len(m.Cert) > domains.MaxCertSize {
		return bad("certificate of %d bytes", len(m.Cert))
	}
	if len(m.Endorse) > MaxEndorseSize || (len(m.Endorse) > 0 && m.Type != MsgHello && m.Type != MsgHandoff) {
		return bad("endorsement of %d bytes", len(m.Endorse))
	}
	seen := make(map[peer.ID]struct{}, len(m.Roster)+len(m.Spares))
	for _, list := range [][]Member{m.Roster, m.Spares} {
		for _, x := range list {
			if x.ID == "" {
				return bad("empty member ID")
			}
			if !validUtility(x.Utility) || x.Utility < 0 {
				return bad("member utility out of range")
			}
			if _, dup := seen[x.ID]; dup {
				return bad("duplicate member %s", x.ID)
			}
			seen[x.ID] = struct{}{}
		}
	}
	switch m.Type {
	case MsgAnnounce, MsgHelloAck, MsgHandoff:
		if len(m.Roster) == 0 {
			return bad("empty roster")
		}
		if m.Epoch == 0 {
			return bad("epoch 0")
		}
	case MsgHello, MsgBid:
		if len(m.Roster) != 0 || len(m.Spares) != 0 {
			return bad("unexpected member list")
		}
	default:
		return fmt.Errorf("%w: unknown type %d", ErrBadMessage, uint8(m.Type))
	}
	return nil
}
