package node

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
)

// Users are the users of a users file ("user:realm:HA1[:key]" lines, written
// by hiersip users add): their digest credentials, which the SIP bridge
// checks, and their user keys, with which the node signs their bindings as
// their owner (README "Names belong to their users"). LoadUsers reads the
// file once for both; Replace swaps them while a node runs (the daemon does
// it on SIGHUP). A Users is safe for concurrent use.
type Users struct {
	digest *sipbridge.Users
	keys   atomic.Pointer[map[string]crypto.PrivKey]
}

// LoadUsers reads a users file. A malformed line fails the whole file,
// naming the line.
func LoadUsers(path string) (*Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	digest, err := sipbridge.ReadUsers(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	keys := make(map[string]crypto.PrivKey)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		user, key, err := domains.ParseUsersLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("users line %d: %w", n, err)
		}
		if key != nil {
			keys[user] = key
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	u := &Users{digest: digest}
	u.keys.Store(&keys)
	return u, nil
}

// Replace makes src's users those of u: the bridge checks their credentials
// from the next request on, and a user given a key signs her bindings with
// it from her next registration on.
func (u *Users) Replace(src *Users) {
	u.digest.Replace(src.digest)
	u.keys.Store(src.keys.Load())
}

// Len returns the number of users.
func (u *Users) Len() int { return u.digest.Len() }

// key returns the user key of user, nil without one (or without users).
func (u *Users) key(user string) crypto.PrivKey {
	if u == nil {
		return nil
	}
	return (*u.keys.Load())[user]
}
