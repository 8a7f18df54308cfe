package domains

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/record"
)

// Every record of hiersip travels in a libp2p signed envelope: a binding
// and a proxy record sealed by the node they name, a certificate and a
// revocation list sealed by a domain's authority. sealRecord and openRecord
// are the two ends every kind goes through; each kind adds its own checks of
// who signed and what it says.

// sealRecord signs rec with key and returns the marshalled envelope, refused
// (ErrRecordTooBig) when it is larger than max.
func sealRecord(rec record.Record, key crypto.PrivKey, max int) ([]byte, error) {
	env, err := record.Seal(rec, key)
	if err != nil {
		return nil, err
	}
	data, err := env.Marshal()
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooBig, len(data), max)
	}
	return data, nil
}

// openRecord checks the size of a sealed record before anything else (at
// most max bytes, else ErrRecordTooBig), verifies the envelope's signature
// and decodes its payload into rec, and returns the signer's public key. An
// envelope that does not verify or decode is an error wrapping bad, the
// sentinel of the kind of record, named by what.
func openRecord(data []byte, rec record.Record, max int, bad error, what string) (crypto.PubKey, error) {
	if len(data) > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooBig, len(data), max)
	}
	env, err := record.ConsumeTypedEnvelope(data, rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", bad, what, err)
	}
	return env.PublicKey, nil
}

// openAuthorityRecord is openRecord for the records only a domain's
// authority signs: a signer other than authority is an error wrapping bad.
func openAuthorityRecord(data []byte, rec record.Record, max int, bad error, what string, authority crypto.PubKey) error {
	signer, err := openRecord(data, rec, max, bad, what)
	if err != nil {
		return err
	}
	if authority == nil || !signer.Equals(authority) {
		return fmt.Errorf("%w: %s not signed by the domain's authority", bad, what)
	}
	return nil
}
