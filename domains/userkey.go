package domains

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	pb "github.com/libp2p/go-libp2p/core/crypto/pb"
)

// A user key is an Ed25519 key that only the holders of a user's
// credentials have: it is kept beside the user's HA1 in the users file, as
// a fourth field of the user's line,
//
//	user:realm:HA1:ed25519-<base64url of the 32-byte seed, unpadded>
//
// Every node whose users file holds the key signs the user's bindings as
// their owner (Binding.SignOwner), so the user's phones can register at any
// of those nodes and the newest registration wins, while nobody without the
// key can displace a live binding. The key is random, never derived from the
// password: its public half is published in the overlay, and a key derived
// from HA1 would let anyone test password guesses offline. A line without
// the field is valid (the node then owns the user's bindings, see
// BindingValidator).
const userKeyPrefix = "ed25519-"

// ErrBadUserKey is returned for a malformed user key.
var ErrBadUserKey = errors.New("domains: invalid user key")

// GenerateUserKey returns a new random user key.
func GenerateUserKey() (crypto.PrivKey, error) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	return k, err
}

// FormatUserKey returns the users-file form of an Ed25519 user key,
// "ed25519-" followed by the unpadded base64url of its 32-byte seed. It
// contains no ':' and fits htdigest-style lines.
func FormatUserKey(k crypto.PrivKey) (string, error) {
	if k == nil || k.Type() != pb.KeyType_Ed25519 {
		return "", fmt.Errorf("%w: not an Ed25519 key", ErrBadUserKey)
	}
	raw, err := k.Raw() // seed (32 bytes) then public key (32 bytes)
	if err != nil || len(raw) != 64 {
		return "", fmt.Errorf("%w: %v", ErrBadUserKey, err)
	}
	return userKeyPrefix + base64.RawURLEncoding.EncodeToString(raw[:32]), nil
}

// ParseUserKey parses the users-file form of a user key (FormatUserKey).
func ParseUserKey(s string) (crypto.PrivKey, error) {
	enc, ok := strings.CutPrefix(strings.TrimSpace(s), userKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: want %s<base64url seed>", ErrBadUserKey, userKeyPrefix)
	}
	seed, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(seed) != 32 {
		return nil, fmt.Errorf("%w: want a base64url-encoded 32-byte seed", ErrBadUserKey)
	}
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadUserKey, err)
	}
	return k, nil
}

// ParseUsersLine returns the user name and, when the line has a fourth field,
// the user key of a users-file line "user:realm:HA1[:key]". It checks only
// the key field; the rest is the SIP bridge's to check. Blank and comment
// lines return an empty user.
func ParseUsersLine(line string) (user string, key crypto.PrivKey, err error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return "", nil, nil
	}
	f := strings.Split(line, ":")
	switch len(f) {
	case 3:
		return f[0], nil, nil
	case 4:
		k, err := ParseUserKey(f[3])
		if err != nil {
			return "", nil, err
		}
		return f[0], k, nil
	default:
		return "", nil, fmt.Errorf("%w: want user:realm:HA1[:key]", ErrBadUserKey)
	}
}
