package node

import (
	"bufio"
	"fmt"
	"os"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// loadUserKeys reads the user keys of a users file ("user:realm:HA1:key"
// lines; lines without a key are skipped): the keys with which the node
// signs its users' bindings as their owner (README "Names belong to their
// users").
func loadUserKeys(path string) (map[string]crypto.PrivKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keys := make(map[string]crypto.PrivKey)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		user, key, err := domains.ParseUsersLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("users line %d: %w", n, err)
		}
		if key != nil {
			keys[user] = key
		}
	}
	return keys, sc.Err()
}

// userKey returns the user key of aor's user, nil without one.
func (n *Node) userKey(aor domains.AOR) crypto.PrivKey {
	if m := n.userKeys.Load(); m != nil {
		return (*m)[aor.User]
	}
	return nil
}
