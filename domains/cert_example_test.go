package domains_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// An authority enrolls a node for every user of bupt.pastry, a validator
// checks the certificate, and a revocation list withdraws it.
func ExampleCertificate() {
	authKey, authPub, _ := crypto.GenerateEd25519Key(nil)
	nodeKey, _, _ := crypto.GenerateEd25519Key(nil)
	node, _ := peer.IDFromPrivateKey(nodeKey)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

	sub, _ := domains.ParseSubject("*@bupt.pastry")
	cert := domains.Certificate{Domain: "pastry", Subject: sub, Peer: node, Serial: 17,
		NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour)}
	sealed, err := cert.Seal(authKey)
	if err != nil {
		panic(err)
	}

	// Every node of the domain knows the authority's public key.
	e, _ := domains.NewEnrollment("pastry", authPub)
	bob, _ := domains.ParseAOR("sip:bob@bupt.pastry")
	_, err = e.VerifyCert(sealed, bob, node, now)
	fmt.Println("bob at the node:", err)

	other, _ := domains.ParseAOR("sip:bob@pastry")
	_, err = e.VerifyCert(sealed, other, node, now)
	fmt.Println("outside the subject:", errors.Is(err, domains.ErrCertMismatch))

	list, _ := domains.RevocationList{Domain: "pastry"}.Revoke(now, 17).Seal(authKey)
	if _, err := e.AddRevocationList(list); err != nil {
		panic(err)
	}
	_, err = e.VerifyCert(sealed, bob, node, now)
	fmt.Println("after revocation:", errors.Is(err, domains.ErrCertRevoked))
	// Output:
	// bob at the node: <nil>
	// outside the subject: true
	// after revocation: true
}
