package domains_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A user key lives in the users file beside the HA1; any node that holds it
// signs the user's binding as its owner, and a newer binding of the same
// owner from another node (the phone moved) replaces the older one, while a
// binding of anyone else does not.
func ExampleGenerateUserKey() {
	key, _ := domains.GenerateUserKey()
	field, _ := domains.FormatUserKey(key)
	line := "bob:pastry:3a1cf1e2c7b0d6a4e95f0123456789ab:" + field // user:realm:HA1:user-key
	user, parsed, _ := domains.ParseUsersLine(line)
	fmt.Println(user, strings.HasPrefix(field, "ed25519-"), parsed.Equals(key))

	now := time.Now()
	v := domains.BindingValidator{Domain: "pastry"}
	bob, _ := domains.ParseAOR("sip:bob@pastry")
	seal := func(seq uint64, owner crypto.PrivKey) []byte {
		nodeKey, _, _ := crypto.GenerateEd25519Key(nil)
		id, _ := peer.IDFromPrivateKey(nodeKey)
		b := &domains.Binding{AOR: bob.String(), Peer: id, Created: now, Expires: now.Add(time.Hour), Seq: seq}
		if owner != nil {
			_ = b.SignOwner(owner)
		}
		val, _ := b.Seal(nodeKey)
		return val
	}
	atNodeA, atNodeB := seal(10, key), seal(11, key)
	stranger := seal(99, nil)
	i, _ := v.Select(domains.BindingKey(bob), [][]byte{atNodeB, atNodeA}) // [incoming, stored]
	fmt.Println("same owner, newer:", i == 0)
	i, _ = v.Select(domains.BindingKey(bob), [][]byte{stranger, atNodeA})
	fmt.Println("another owner:", i == 0)
	// Output:
	// bob true true
	// same owner, newer: true
	// another owner: false
}

// A domain's proxy record passes from one proxy to the next only with the
// endorsement of a majority of the electors the stored record names.
func ExampleProxySupersedes() {
	keys := make([]crypto.PrivKey, 3)
	ids := make([]peer.ID, 3)
	for i := range keys {
		keys[i], _, _ = crypto.GenerateEd25519Key(nil)
		ids[i], _ = peer.IDFromPrivateKey(keys[i])
	}
	proxy, candidate, other := ids[0], ids[1], ids[2]
	rec := func(signer peer.ID, epoch uint64) *domains.ProxyRecord {
		return &domains.ProxyRecord{Domain: "pastry", Signer: signer, Epoch: epoch,
			Proxies: []peer.AddrInfo{{ID: signer}}, Electors: []peer.ID{signer, other}}
	}
	stored := rec(proxy, 7)
	stored.Electors = []peer.ID{proxy, candidate, other}

	next := rec(candidate, 8)
	fmt.Println("alone:", domains.ProxySupersedes(next, stored))
	en, _ := domains.Endorse(keys[2], "pastry", 8, candidate) // the other elector follows it
	next.Endorsements = append(next.Endorsements, en)
	fmt.Println("endorsed by a majority:", domains.ProxySupersedes(next, stored))
	fmt.Println("a higher epoch alone:", domains.ProxySupersedes(rec(other, 1000), stored))
	// Output:
	// alone: false
	// endorsed by a majority: true
	// a higher epoch alone: false
}
