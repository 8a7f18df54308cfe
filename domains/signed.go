package domains

import (
	"encoding/json"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	pb "github.com/libp2p/go-libp2p/core/crypto/pb"
)

// The records a user key signs besides the node's envelope (a binding, a
// device set, a mailbox key, a mail ack) and the records with an
// authority's key share these helpers: one JSON form, one signed message
// (a domain-separation prefix and that form without the signature), one
// check of an Ed25519 key.

// checkEd25519 refuses a private key that is missing or not Ed25519 with an
// error wrapping bad, naming what the key is for.
func checkEd25519(key crypto.PrivKey, bad error, what string) error {
	if key == nil || key.Type() != pb.KeyType_Ed25519 {
		return fmt.Errorf("%w: %s", bad, what)
	}
	return nil
}

// marshalKey returns a public key's protobuf form, nil for no key.
func marshalKey(k crypto.PubKey) ([]byte, error) {
	if k == nil {
		return nil, nil
	}
	raw, err := crypto.MarshalPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrBadRecord, err)
	}
	return raw, nil
}

// unmarshalEd25519 decodes a public key that must be Ed25519; anything else
// is an error wrapping bad that names what the key is.
func unmarshalEd25519(raw []byte, bad error, what string) (crypto.PubKey, error) {
	k, err := crypto.UnmarshalPublicKey(raw)
	if err != nil || k.Type() != pb.KeyType_Ed25519 {
		return nil, fmt.Errorf("%w: %s is not an Ed25519 key", bad, what)
	}
	return k, nil
}

// signedMessage returns what a signature over a record covers: prefix, then
// j, the record's JSON form without the signature.
func signedMessage(prefix string, j any) ([]byte, error) {
	data, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	return append([]byte(prefix), data...), nil
}

// signAs signs a record with a user's Ed25519 key: setKey gives the record
// the key's public half (and clears its old signature), form returns its
// JSON form without the signature. It returns the message signed and the
// signature.
func signAs[J any](key crypto.PrivKey, prefix string, setKey func(crypto.PubKey), form func() (J, error)) (msg, sig []byte, err error) {
	if err := checkEd25519(key, ErrBadUserKey, "not an Ed25519 key"); err != nil {
		return nil, nil, err
	}
	setKey(key.GetPublic())
	j, err := form()
	if err != nil {
		return nil, nil, err
	}
	if msg, err = signedMessage(prefix, j); err != nil {
		return nil, nil, err
	}
	if sig, err = key.Sign(msg); err != nil {
		return nil, nil, err
	}
	return msg, sig, nil
}

// marshalSigned is MarshalRecord of a signed record: its JSON form (form)
// with the signature added by withSig.
func marshalSigned[J any](form func() (J, error), withSig func(*J)) ([]byte, error) {
	j, err := form()
	if err != nil {
		return nil, err
	}
	withSig(&j)
	return json.Marshal(j)
}

// openOwner decodes the optional owner of a received record: its key (raw)
// and signature (*sig, at most MaxOwnerSig bytes), and returns the key and
// what the signature covers: prefix and j, the record's JSON form (a
// pointer), without the signature. Checking the signature is the opener's
// job.
func openOwner(raw []byte, sig *[]byte, prefix string, j any) (crypto.PubKey, []byte, error) {
	s := *sig
	if len(s) == 0 || len(s) > MaxOwnerSig {
		return nil, nil, fmt.Errorf("%w: owner signature of %d bytes", ErrBadOwner, len(s))
	}
	k, err := unmarshalEd25519(raw, ErrBadOwner, "owner key")
	if err != nil {
		return nil, nil, err
	}
	*sig = nil
	msg, err := signedMessage(prefix, j)
	*sig = s
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	return k, msg, nil
}

// decodeJSON decodes a record's JSON payload into v after checking its size
// (at most max bytes, else ErrRecordTooBig); JSON that does not decode is an
// error wrapping bad.
func decodeJSON(data []byte, max int, v any, bad error) error {
	if len(data) > max {
		return ErrRecordTooBig
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %v", bad, err)
	}
	return nil
}
