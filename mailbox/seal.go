package mailbox

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/crypto"
	pb "github.com/libp2p/go-libp2p/core/crypto/pb"
)

// The HPKE suite messages are sealed with (RFC 9180, base mode):
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305. A sealed
// message is the 32-byte encapsulated key, the ciphertext and a 16-byte tag.
var (
	kem  = hpke.DHKEM(ecdh.X25519())
	kdf  = hpke.HKDFSHA256()
	aead = hpke.ChaCha20Poly1305()
)

// kemLabel separates the mailbox key from every other use of the owner key.
const kemLabel = "hiersip-mailbox-kem/1"

// kemKey derives the recipient's HPKE key pair from its owner key (the
// user key, or the node key of a user without one): every node holding the
// user key derives the same pair, so any of them can read the user's
// waiting messages; nothing else is stored. The derivation goes through
// HKDF first, so the Ed25519 seed itself never meets X25519.
func kemKey(owner crypto.PrivKey) (hpke.PrivateKey, error) {
	if owner == nil || owner.Type() != pb.KeyType_Ed25519 {
		return nil, fmt.Errorf("%w: the owner key is not an Ed25519 key", ErrBadKey)
	}
	raw, err := owner.Raw() // seed, then public key
	if err != nil || len(raw) != 64 {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	ikm, err := hkdf.Key(sha256.New, raw[:32], nil, kemLabel, 32)
	if err != nil {
		return nil, err
	}
	return kem.DeriveKeyPair(ikm)
}

// MessageID names a message for deduplication: a hash of its sender, its
// Call-ID and CSeq, so that a retransmission (through another proxy too)
// has the same ID.
func MessageID(from, callID string, cseq uint32) []byte {
	h := sha256.Sum256([]byte("hiersip-mail-id/1\n" + from + "\n" + callID + "\n" + strconv.FormatUint(uint64(cseq), 10)))
	return h[:domains.MailIDSize]
}

// info binds a sealed message to its recipient and ID: a box moved to
// another mailbox or given another ID does not open.
func info(aor domains.AOR, id []byte) []byte {
	return []byte("hiersip-mailbox/1\n" + aor.String() + "\n" + hex.EncodeToString(id))
}

// letter is what is sealed: everything of the MESSAGE the recipient needs.
type letter struct {
	From        string `json:"from"`
	To          string `json:"to"`
	CallID      string `json:"call_id"`
	CSeq        uint32 `json:"cseq"`
	ContentType string `json:"content_type"`
	Body        []byte `json:"body"`
	Date        int64  `json:"date"`
}

func seal(kemPub []byte, to domains.AOR, id []byte, m Message, date time.Time) ([]byte, error) {
	pk, err := kem.NewPublicKey(kemPub)
	if err != nil {
		return nil, fmt.Errorf("%w: mailbox key of %s: %v", ErrBadKey, to, err)
	}
	pt, err := json.Marshal(letter{From: m.From, To: to.String(), CallID: m.CallID, CSeq: m.CSeq,
		ContentType: m.ContentType, Body: m.Body, Date: date.UnixMilli()})
	if err != nil {
		return nil, err
	}
	return hpke.Seal(pk, kdf, aead, info(to, id), pt)
}

func open(priv hpke.PrivateKey, to domains.AOR, id, box []byte) (letter, error) {
	pt, err := hpke.Open(priv, kdf, aead, info(to, id), box)
	if err != nil {
		return letter{}, err
	}
	var l letter
	if err := json.Unmarshal(pt, &l); err != nil {
		return letter{}, err
	}
	return l, nil
}
