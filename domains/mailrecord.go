package domains

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
)

// Mailbox records (issue 19, preview): messages that wait in the domain
// overlay for a user with no live device. Three records, all bounded:
//
//   - MailboxKey (namespace NSMailboxKey, key MailboxKeyKey(aor)): the
//     public key messages to the user are sealed to, signed by the user's
//     owner key (the user key, or the serving node's key for a user
//     without one). First come, first served per owner while it lives.
//   - MailQueue (namespace NSMail, key MailSlotKey(aor, slot)): up to
//     MaxMailPerQueue sealed messages of one sender, written by the node
//     that took them (its writer). A user has MailSlots slots; a writer
//     tries them in the order SlotOf gives for the sender's tag (probe 0,
//     1, …), which the queue names (Probe) and storers check, and keeps
//     at most MaxSenderQueues queues of one sender per user.
//   - MailAck (same key as the queue it acknowledges): signed with the
//     recipient's key, it removes the queue's messages up to a version.
//
// The package mailbox seals, stores, fetches and acknowledges them.

// Limits of mailbox records.
const (
	MailSlots             = 16                  // queues per user
	MaxSenderQueues       = 3                   // queues of one sender per user (writers enforce it)
	MaxMailPerQueue       = 10                  // messages per queue
	MaxSealedMessage      = 3 << 10             // bytes of one sealed message
	MaxMailRecordSize     = 48 << 10            // bytes of a sealed queue or ack
	MaxMailboxKeySize     = 2 << 10             // bytes of a sealed mailbox key
	MaxMailRetention      = 30 * 24 * time.Hour // how long a message may wait
	MaxMailboxKeyLifetime = 30 * 24 * time.Hour
	MailIDSize            = 16 // bytes of a message ID
	MaxSenderTag          = 32 // bytes of a sender tag
)

// Key namespaces of mailbox records in a domain overlay.
const (
	NSMailboxKey = "hsk"
	NSMail       = "hsm"
)

// Envelope domains of mailbox records.
const (
	MailboxKeyEnvelopeDomain = "hiersip-mailbox-key"
	MailEnvelopeDomain       = "hiersip-mail"
)

var (
	mailboxKeyCodec = []byte("/hiersip/mailbox-key/1")
	mailQueueCodec  = []byte("/hiersip/mail-queue/1")
	mailAckCodec    = []byte("/hiersip/mail-ack/1")
)

func init() {
	record.RegisterType(&MailboxKey{})
	record.RegisterType(&MailQueue{})
	record.RegisterType(&MailAck{})
}

// Errors of mailbox records.
var (
	ErrMailSlot = errors.New("domains: mail queue in a slot its sender may not use")
)

// MailboxKeyKey returns the DHT key of an AOR's mailbox key.
func MailboxKeyKey(a AOR) string {
	id := sha256.Sum256([]byte("mailbox-key\n" + a.String()))
	return "/" + NSMailboxKey + "/" + string(id[:])
}

// MailSlotKey returns the DHT key of slot (0 ≤ slot < MailSlots) of an AOR's
// mailbox.
func MailSlotKey(a AOR, slot int) string {
	id := sha256.Sum256([]byte("mailbox\n" + a.String() + "\n" + strconv.Itoa(slot)))
	return "/" + NSMail + "/" + string(id[:])
}

// SenderTag names a sender in a recipient's mailbox: a hash of both AORs,
// so storers see that the same sender wrote twice but not who it is (a
// guesser can confirm a suspected sender).
func SenderTag(recipient AOR, sender string) string {
	h := sha256.Sum256([]byte("hiersip-mail-sender/1\n" + recipient.String() + "\n" + sender))
	return fmt.Sprintf("%x", h[:MaxSenderTag/2])
}

// SlotOf returns the slot of a sender's probe-th queue in a recipient's
// mailbox (0 ≤ probe < MailSlots): the probes of one sender visit every
// slot once, in an order of their own (a permutation seeded by a hash of
// the recipient and the sender tag), so that senders spread over the slots
// and any free slot takes a new sender.
func SlotOf(recipient AOR, senderTag string, probe int) int {
	if probe < 0 || probe >= MailSlots {
		return -1
	}
	h := sha256.Sum256([]byte("hiersip-mail-slot/1\n" + recipient.String() + "\n" + senderTag))
	var perm [MailSlots]int
	for i := range perm {
		perm[i] = i
	}
	for i := MailSlots - 1; i > 0; i-- { // Fisher–Yates, one hash byte per step
		j := int(h[i]) % (i + 1)
		perm[i], perm[j] = perm[j], perm[i]
	}
	return perm[probe]
}

// MailboxKey publishes the key that messages waiting for a user are sealed
// to. Owner signs it: the user key, or for a user without one the key of
// the node that serves it (Owner is then that node's key, and only that
// node can read the messages). Node seals it.
type MailboxKey struct {
	AOR      string
	Node     peer.ID       // the node that sealed it
	Owner    crypto.PubKey // Ed25519
	KEM      []byte        // the HPKE public key (DHKEM(X25519, HKDF-SHA256), 32 bytes)
	Seq      uint64
	Expires  time.Time
	Removed  bool   // the user takes no more waiting messages
	Cert     []byte // enrolled domains: the node's certificate for the AOR
	OwnerSig []byte

	ownerMsg []byte
}

type mailboxKeyJSON struct {
	AOR      string `json:"aor"`
	Node     string `json:"node"`
	Owner    []byte `json:"owner"`
	KEM      []byte `json:"kem"`
	Seq      uint64 `json:"seq"`
	Expires  int64  `json:"expires"`
	Removed  bool   `json:"removed,omitempty"`
	Cert     []byte `json:"cert,omitempty"`
	OwnerSig []byte `json:"osig,omitempty"`
}

const mailboxKeySigPrefix = "hiersip-mailbox-key/1\n"

func (k *MailboxKey) toJSON() (mailboxKeyJSON, error) {
	raw, err := marshalKey(k.Owner)
	if err != nil {
		return mailboxKeyJSON{}, err
	}
	return mailboxKeyJSON{AOR: k.AOR, Node: k.Node.String(), Owner: raw, KEM: k.KEM, Seq: k.Seq,
		Expires: k.Expires.UnixMilli(), Removed: k.Removed, Cert: k.Cert}, nil
}

// Sign sets Owner to owner's public half and signs the key record with it.
func (k *MailboxKey) Sign(owner crypto.PrivKey) (err error) {
	k.ownerMsg, k.OwnerSig, err = signAs(owner, mailboxKeySigPrefix,
		func(pub crypto.PubKey) { k.Owner, k.OwnerSig = pub, nil }, k.toJSON)
	return err
}

// Domain implements record.Record.
func (k *MailboxKey) Domain() string { return MailboxKeyEnvelopeDomain }

// Codec implements record.Record.
func (k *MailboxKey) Codec() []byte { return mailboxKeyCodec }

// MarshalRecord implements record.Record.
func (k *MailboxKey) MarshalRecord() ([]byte, error) {
	return marshalSigned(k.toJSON, func(j *mailboxKeyJSON) { j.OwnerSig = k.OwnerSig })
}

// UnmarshalRecord implements record.Record.
func (k *MailboxKey) UnmarshalRecord(data []byte) error {
	var j mailboxKeyJSON
	if err := decodeJSON(data, MaxMailboxKeySize, &j, ErrBadRecord); err != nil {
		return err
	}
	n, err := peer.Decode(j.Node)
	if err != nil {
		return fmt.Errorf("%w: node: %v", ErrBadRecord, err)
	}
	owner, err := unmarshalEd25519(j.Owner, ErrBadOwner, "owner key")
	if err != nil {
		return err
	}
	if len(j.KEM) != 32 || len(j.OwnerSig) == 0 || len(j.OwnerSig) > MaxOwnerSig || len(j.Cert) > MaxCertSize {
		return fmt.Errorf("%w: mailbox key: key, signature or certificate size", ErrBadRecord)
	}
	*k = MailboxKey{AOR: j.AOR, Node: n, Owner: owner, KEM: j.KEM, Seq: j.Seq, Expires: time.UnixMilli(j.Expires),
		Removed: j.Removed, Cert: j.Cert, OwnerSig: j.OwnerSig}
	sig := j.OwnerSig
	j.OwnerSig = nil
	if k.ownerMsg, err = signedMessage(mailboxKeySigPrefix, j); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	k.OwnerSig = sig
	return nil
}

// Seal signs the record with the node's key (its peer ID must be k.Node).
func (k *MailboxKey) Seal(nodeKey crypto.PrivKey) ([]byte, error) {
	return sealRecord(k, nodeKey, MaxMailboxKeySize)
}

// OwnerID identifies the owner of a mailbox key.
func (k *MailboxKey) OwnerID() string {
	raw, _ := k.Owner.Raw()
	return string(raw)
}

// Live reports whether the key may be used at now.
func (k *MailboxKey) Live(now time.Time) bool { return !k.Removed && now.Before(k.Expires) }

// MailboxKeyValidator validates mailbox keys of one domain: sealed by its
// Node, signed by its Owner, under MailboxKeyKey of a canonical AOR of the
// domain, not expired, expiring at most MaxMailboxKeyLifetime ahead, Seq
// not ahead of the clock; in an enrolled domain Node needs a certificate
// for the AOR. Select: the same owner replaces the stored key by a higher
// Seq; another owner only once the stored key has lapsed or was removed.
type MailboxKeyValidator struct {
	Domain     string
	Now        func() time.Time
	Enrollment *Enrollment
	OnRefuse   func(reason string)
}

func (v MailboxKeyValidator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Validate implements record.Validator.
func (v MailboxKeyValidator) Validate(key string, value []byte) error {
	_, err := v.Open(key, value)
	if err != nil && v.OnRefuse != nil {
		v.OnRefuse(RefusalReason(err))
	}
	return err
}

// Open validates value as the mailbox key stored under key and returns it.
func (v MailboxKeyValidator) Open(key string, value []byte) (*MailboxKey, error) {
	if len(value) > MaxMailboxKeySize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooBig, len(value), MaxMailboxKeySize)
	}
	var k MailboxKey
	env, err := record.ConsumeTypedEnvelope(value, &k)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if !k.Node.MatchesPublicKey(env.PublicKey) {
		return nil, ErrWrongSigner
	}
	if ok, err := k.Owner.Verify(k.ownerMsg, k.OwnerSig); err != nil || !ok {
		return nil, ErrBadOwner
	}
	aor, err := v.checkAOR(k.AOR, key, MailboxKeyKey)
	if err != nil {
		return nil, err
	}
	now := v.now()
	if !now.Before(k.Expires) {
		return nil, fmt.Errorf("%w: mailbox key of %s", ErrExpired, k.AOR)
	}
	ahead := now.Add(MaxClockSkew)
	if k.Expires.After(ahead.Add(MaxMailboxKeyLifetime)) || k.Seq > SeqAt(ahead) {
		return nil, fmt.Errorf("%w: %w: mailbox key of %s", ErrBadRecord, ErrAhead, k.AOR)
	}
	if v.Enrollment != nil {
		if _, err := v.Enrollment.VerifyCert(k.Cert, aor, k.Node, now); err != nil {
			return nil, fmt.Errorf("mailbox key of %s: %w", k.AOR, err)
		}
	}
	return &k, nil
}

func (v MailboxKeyValidator) checkAOR(s, key string, keyOf func(AOR) string) (AOR, error) {
	return checkRecordAOR(v.Domain, s, key, keyOf)
}

func checkRecordAOR(domain, s, key string, keyOf func(AOR) string) (AOR, error) {
	aor, err := ParseAOR(s)
	if err != nil {
		return AOR{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if aor.String() != s {
		return AOR{}, fmt.Errorf("%w: AOR %q is not canonical", ErrBadRecord, s)
	}
	if !aor.InDomain(domain) {
		return AOR{}, fmt.Errorf("%w: %s not in %s", ErrNotInDomain, s, domain)
	}
	if key != keyOf(aor) {
		return AOR{}, fmt.Errorf("%w: %s", ErrWrongKey, s)
	}
	return aor, nil
}

// Select implements record.Validator.
func (v MailboxKeyValidator) Select(key string, values [][]byte) (int, error) {
	now := v.now()
	ks := make([]*MailboxKey, len(values))
	for i, val := range values {
		if k, err := v.Open(key, val); err == nil {
			ks[i] = k
		}
	}
	best := selectBest(len(values), func(i int) bool { return ks[i] != nil }, func(i, j int) bool {
		a, b := ks[i], ks[j]
		if a.OwnerID() == b.OwnerID() {
			return a.Seq > b.Seq
		}
		return a.Live(now) && !b.Live(now)
	})
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid mailbox key among %d values", ErrBadRecord, len(values))
	}
	return best, nil
}

// SealedMessage is one message in a queue: an ID (for deduplication and
// acknowledgement), when the writer took it, until when it waits, and the
// HPKE ciphertext only the recipient can open.
type SealedMessage struct {
	ID      []byte // MailIDSize bytes
	Time    time.Time
	Expires time.Time
	Box     []byte // at most MaxSealedMessage bytes
}

// MailQueue is one sender's messages waiting for a user, in one slot of the
// user's mailbox, written (sealed) by the node that took them. The queue
// belongs to (Writer, Sender, Probe): that writer replaces it by a higher
// Seq; anyone else may take the slot only once it has lapsed or been
// acknowledged. Recipient is the key that signs acknowledgements (the
// mailbox key's owner when the writer sealed the messages).
type MailQueue struct {
	AOR       string
	Slot      int
	Sender    string // SenderTag
	Probe     int
	Writer    peer.ID
	Seq       uint64
	Expires   time.Time // the latest message's
	Recipient crypto.PubKey
	Messages  []SealedMessage
}

type sealedJSON struct {
	ID      []byte `json:"id"`
	Time    int64  `json:"t"`
	Expires int64  `json:"exp"`
	Box     []byte `json:"box"`
}

type mailQueueJSON struct {
	AOR       string       `json:"aor"`
	Slot      int          `json:"slot"`
	Sender    string       `json:"sender"`
	Probe     int          `json:"probe"`
	Writer    string       `json:"writer"`
	Seq       uint64       `json:"seq"`
	Expires   int64        `json:"expires"`
	Recipient []byte       `json:"recipient"`
	Messages  []sealedJSON `json:"msgs"`
}

// Domain implements record.Record.
func (q *MailQueue) Domain() string { return MailEnvelopeDomain }

// Codec implements record.Record.
func (q *MailQueue) Codec() []byte { return mailQueueCodec }

// MarshalRecord implements record.Record.
func (q *MailQueue) MarshalRecord() ([]byte, error) {
	raw, err := marshalKey(q.Recipient)
	if err != nil {
		return nil, err
	}
	j := mailQueueJSON{AOR: q.AOR, Slot: q.Slot, Sender: q.Sender, Probe: q.Probe, Writer: q.Writer.String(),
		Seq: q.Seq, Expires: q.Expires.UnixMilli(), Recipient: raw}
	for _, m := range q.Messages {
		j.Messages = append(j.Messages, sealedJSON{ID: m.ID, Time: m.Time.UnixMilli(), Expires: m.Expires.UnixMilli(), Box: m.Box})
	}
	return json.Marshal(j)
}

// UnmarshalRecord implements record.Record.
func (q *MailQueue) UnmarshalRecord(data []byte) error {
	var j mailQueueJSON
	if err := decodeJSON(data, MaxMailRecordSize, &j, ErrBadRecord); err != nil {
		return err
	}
	w, err := peer.Decode(j.Writer)
	if err != nil {
		return fmt.Errorf("%w: writer: %v", ErrBadRecord, err)
	}
	rk, err := unmarshalEd25519(j.Recipient, ErrBadOwner, "recipient key")
	if err != nil {
		return err
	}
	if len(j.Messages) == 0 || len(j.Messages) > MaxMailPerQueue {
		return fmt.Errorf("%w: %d messages in a queue, 1 to %d", ErrBadRecord, len(j.Messages), MaxMailPerQueue)
	}
	if j.Slot < 0 || j.Slot >= MailSlots || j.Probe < 0 || j.Probe >= MailSlots || j.Sender == "" || len(j.Sender) > MaxSenderTag {
		return fmt.Errorf("%w: slot %d, probe %d, sender tag of %d bytes", ErrBadRecord, j.Slot, j.Probe, len(j.Sender))
	}
	*q = MailQueue{AOR: j.AOR, Slot: j.Slot, Sender: j.Sender, Probe: j.Probe, Writer: w, Seq: j.Seq,
		Expires: time.UnixMilli(j.Expires), Recipient: rk}
	for _, m := range j.Messages {
		if len(m.ID) != MailIDSize || len(m.Box) == 0 || len(m.Box) > MaxSealedMessage {
			return fmt.Errorf("%w: message of %d bytes, ID of %d", ErrBadRecord, len(m.Box), len(m.ID))
		}
		if slices.ContainsFunc(q.Messages, func(o SealedMessage) bool { return bytes.Equal(o.ID, m.ID) }) {
			return fmt.Errorf("%w: a message twice in a queue", ErrBadRecord)
		}
		q.Messages = append(q.Messages, SealedMessage{ID: m.ID, Time: time.UnixMilli(m.Time), Expires: time.UnixMilli(m.Expires), Box: m.Box})
	}
	return nil
}

// Seal signs the queue with the writer's node key.
func (q *MailQueue) Seal(nodeKey crypto.PrivKey) ([]byte, error) {
	return sealRecord(q, nodeKey, MaxMailRecordSize)
}

// MailAck acknowledges the queues of a slot: the recipient took their
// messages up to the versions it names (Acked: writer and Seq, one per
// queue the recipient saw in the slot, at most MaxAckedQueues: storers may
// hold different queues when two writers took the slot at once), and
// storers may drop them. Recipient signs it (it must be the queues'
// Recipient); Signer, the recipient's node, seals it. It lives as long as
// the queues it acknowledges would have, so that a replay of one is itself
// expired once the ack lapses.
type MailAck struct {
	AOR       string
	Slot      int
	Acked     []AckedQueue
	Expires   time.Time
	Recipient crypto.PubKey
	Signer    peer.ID
	Sig       []byte

	sigMsg []byte
}

// AckedQueue names an acknowledged queue version.
type AckedQueue struct {
	Writer peer.ID
	Seq    uint64
}

// MaxAckedQueues bounds the queues one ack names.
const MaxAckedQueues = 4

// Covers returns whether a acknowledges the queue of writer w at version
// seq.
func (a *MailAck) Covers(w peer.ID, seq uint64) bool {
	return slices.ContainsFunc(a.Acked, func(q AckedQueue) bool { return q.Writer == w && q.Seq >= seq })
}

type ackedJSON struct {
	Writer string `json:"writer"`
	Seq    uint64 `json:"seq"`
}

type mailAckJSON struct {
	AOR       string      `json:"aor"`
	Slot      int         `json:"slot"`
	Acked     []ackedJSON `json:"acked"`
	Expires   int64       `json:"expires"`
	Recipient []byte      `json:"recipient"`
	Signer    string      `json:"signer"`
	Sig       []byte      `json:"sig,omitempty"`
}

const mailAckSigPrefix = "hiersip-mail-ack/1\n"

func (a *MailAck) toJSON() (mailAckJSON, error) {
	raw, err := marshalKey(a.Recipient)
	if err != nil {
		return mailAckJSON{}, err
	}
	j := mailAckJSON{AOR: a.AOR, Slot: a.Slot, Expires: a.Expires.UnixMilli(), Recipient: raw, Signer: a.Signer.String()}
	for _, q := range a.Acked {
		j.Acked = append(j.Acked, ackedJSON{Writer: q.Writer.String(), Seq: q.Seq})
	}
	return j, nil
}

// Sign sets Recipient to key's public half and signs the ack with it.
func (a *MailAck) Sign(key crypto.PrivKey) (err error) {
	a.sigMsg, a.Sig, err = signAs(key, mailAckSigPrefix,
		func(pub crypto.PubKey) { a.Recipient, a.Sig = pub, nil }, a.toJSON)
	return err
}

// Domain implements record.Record.
func (a *MailAck) Domain() string { return MailEnvelopeDomain }

// Codec implements record.Record.
func (a *MailAck) Codec() []byte { return mailAckCodec }

// MarshalRecord implements record.Record.
func (a *MailAck) MarshalRecord() ([]byte, error) {
	return marshalSigned(a.toJSON, func(j *mailAckJSON) { j.Sig = a.Sig })
}

// UnmarshalRecord implements record.Record.
func (a *MailAck) UnmarshalRecord(data []byte) error {
	var j mailAckJSON
	if err := decodeJSON(data, MaxMailRecordSize, &j, ErrBadRecord); err != nil {
		return err
	}
	s, err := peer.Decode(j.Signer)
	if err != nil {
		return fmt.Errorf("%w: signer: %v", ErrBadRecord, err)
	}
	rk, err := unmarshalEd25519(j.Recipient, ErrBadOwner, "recipient key")
	if err != nil {
		return err
	}
	if j.Slot < 0 || j.Slot >= MailSlots || len(j.Sig) == 0 || len(j.Sig) > MaxOwnerSig || len(j.Acked) == 0 || len(j.Acked) > MaxAckedQueues {
		return fmt.Errorf("%w: ack of slot %d naming %d queues", ErrBadRecord, j.Slot, len(j.Acked))
	}
	*a = MailAck{AOR: j.AOR, Slot: j.Slot, Expires: time.UnixMilli(j.Expires), Recipient: rk, Signer: s, Sig: j.Sig}
	for _, q := range j.Acked {
		w, err := peer.Decode(q.Writer)
		if err != nil {
			return fmt.Errorf("%w: acknowledged writer: %v", ErrBadRecord, err)
		}
		if slices.ContainsFunc(a.Acked, func(o AckedQueue) bool { return o.Writer == w }) {
			return fmt.Errorf("%w: a writer twice in an ack", ErrBadRecord)
		}
		a.Acked = append(a.Acked, AckedQueue{Writer: w, Seq: q.Seq})
	}
	j.Sig = nil
	if a.sigMsg, err = signedMessage(mailAckSigPrefix, j); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	return nil
}

// Seal signs the ack with the recipient's node key (its peer ID must be
// a.Signer).
func (a *MailAck) Seal(nodeKey crypto.PrivKey) ([]byte, error) {
	return sealRecord(a, nodeKey, MaxMailRecordSize)
}

// MailRecord is a record of a mailbox slot: a *MailQueue or a *MailAck.
type MailRecord interface {
	record.Record
	Seal(nodeKey crypto.PrivKey) ([]byte, error)
	expires() time.Time
	aor() string
	slot() int
}

func (q *MailQueue) expires() time.Time { return q.Expires }
func (q *MailQueue) aor() string        { return q.AOR }
func (q *MailQueue) slot() int          { return q.Slot }
func (a *MailAck) expires() time.Time   { return a.Expires }
func (a *MailAck) aor() string          { return a.AOR }
func (a *MailAck) slot() int            { return a.Slot }

// MailValidator validates the records of mailbox slots of one domain. A
// queue is valid when sealed by its Writer, under the key of its slot of a
// canonical AOR of the domain, in the slot its sender tag and Probe give
// (SlotOf), with 1 to MaxMailPerQueue messages of at most
// MaxSealedMessage bytes each, distinct IDs, no message waiting longer than
// MaxMailRetention, the record expiring with its latest message, not
// expired, not dated ahead of the clock. An ack is valid when sealed by its
// Signer and signed by its Recipient, for a slot key of the domain, not
// expired, expiring at most MaxMailRetention ahead, naming 1 to
// MaxAckedQueues queue versions none ahead of the clock.
type MailValidator struct {
	Domain   string
	Now      func() time.Time
	OnRefuse func(reason string)
}

func (v MailValidator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Validate implements record.Validator.
func (v MailValidator) Validate(key string, value []byte) error {
	_, err := v.Open(key, value)
	if err != nil && v.OnRefuse != nil {
		v.OnRefuse(RefusalReason(err))
	}
	return err
}

// Open validates value as a record of the slot stored under key and returns
// it: a *MailQueue or a *MailAck.
func (v MailValidator) Open(key string, value []byte) (MailRecord, error) {
	if len(value) > MaxMailRecordSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooBig, len(value), MaxMailRecordSize)
	}
	env, rec, err := record.ConsumeEnvelope(value, MailEnvelopeDomain)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	r, ok := rec.(MailRecord)
	if !ok {
		return nil, fmt.Errorf("%w: not a mail record", ErrBadRecord)
	}
	aor, err := checkRecordAOR(v.Domain, r.aor(), key, func(a AOR) string { return MailSlotKey(a, r.slot()) })
	if err != nil {
		return nil, err
	}
	now := v.now()
	ahead := now.Add(MaxClockSkew)
	if !now.Before(r.expires()) {
		return nil, fmt.Errorf("%w: mail of %s", ErrExpired, r.aor())
	}
	if r.expires().After(ahead.Add(MaxMailRetention)) {
		return nil, fmt.Errorf("%w: %w: mail of %s expires too far ahead", ErrBadRecord, ErrAhead, r.aor())
	}
	switch r := r.(type) {
	case *MailQueue:
		if !r.Writer.MatchesPublicKey(env.PublicKey) {
			return nil, ErrWrongSigner
		}
		if SlotOf(aor, r.Sender, r.Probe) != r.Slot {
			return nil, fmt.Errorf("%w: sender %s, probe %d, slot %d", ErrMailSlot, r.Sender, r.Probe, r.Slot)
		}
		if r.Seq > SeqAt(ahead) {
			return nil, fmt.Errorf("%w: %w: queue of %s", ErrBadRecord, ErrAhead, r.AOR)
		}
		var latest time.Time
		for _, m := range r.Messages {
			if m.Time.After(ahead) || m.Expires.After(m.Time.Add(MaxMailRetention)) {
				return nil, fmt.Errorf("%w: %w: a message dated ahead or waiting too long", ErrBadRecord, ErrAhead)
			}
			if m.Expires.After(latest) {
				latest = m.Expires
			}
		}
		if !latest.Equal(r.Expires) {
			return nil, fmt.Errorf("%w: queue expires at %v, its latest message at %v", ErrBadRecord, r.Expires, latest)
		}
	case *MailAck:
		if !r.Signer.MatchesPublicKey(env.PublicKey) {
			return nil, ErrWrongSigner
		}
		if ok, err := r.Recipient.Verify(r.sigMsg, r.Sig); err != nil || !ok {
			return nil, ErrBadOwner
		}
		for _, q := range r.Acked {
			if q.Seq > SeqAt(ahead) {
				return nil, fmt.Errorf("%w: %w: ack of %s", ErrBadRecord, ErrAhead, r.AOR)
			}
		}
	}
	return r, nil
}

// MailSupersedes reports whether mail record a replaces b in a slot at now:
//
//   - a queue replaces a queue of the same writer, sender and probe with a
//     higher Seq, and any queue that has lapsed;
//   - an ack replaces a queue when signed by the queue's Recipient and
//     naming its writer at a Seq at least the queue's (or when the queue
//     has lapsed);
//   - a queue replaces an ack unless the ack, of the same recipient, names
//     its writer at a Seq at least the queue's: a replay;
//   - an ack replaces an ack of the same recipient that it covers (every
//     queue the older names, at the same or a higher Seq, and more), and
//     any ack that has lapsed.
func MailSupersedes(a, b MailRecord, now time.Time) bool {
	bLive := now.Before(b.expires())
	switch a := a.(type) {
	case *MailQueue:
		switch b := b.(type) {
		case *MailQueue:
			if a.Writer == b.Writer && a.Sender == b.Sender && a.Probe == b.Probe {
				return a.Seq > b.Seq
			}
			return !bLive
		case *MailAck:
			return !a.Recipient.Equals(b.Recipient) || !b.Covers(a.Writer, a.Seq) || !bLive
		}
	case *MailAck:
		switch b := b.(type) {
		case *MailQueue:
			if a.Recipient.Equals(b.Recipient) && a.Covers(b.Writer, b.Seq) {
				return true
			}
			return !bLive
		case *MailAck:
			if a.Recipient.Equals(b.Recipient) {
				return acksCover(a, b) && !acksCover(b, a)
			}
			return !bLive
		}
	}
	return false
}

// acksCover reports whether a names every queue b names, at the same or a
// higher Seq.
func acksCover(a, b *MailAck) bool {
	for _, q := range b.Acked {
		if !a.Covers(q.Writer, q.Seq) {
			return false
		}
	}
	return true
}

// Select implements record.Validator with MailSupersedes.
func (v MailValidator) Select(key string, values [][]byte) (int, error) {
	now := v.now()
	rs := make([]MailRecord, len(values))
	for i, val := range values {
		if r, err := v.Open(key, val); err == nil {
			rs[i] = r
		}
	}
	best := selectBest(len(values), func(i int) bool { return rs[i] != nil },
		func(i, j int) bool { return MailSupersedes(rs[i], rs[j], now) })
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid mail record among %d values", ErrBadRecord, len(values))
	}
	return best, nil
}
