package enroll_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/domains/enroll"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestAuthorityFiles(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "a.key")
	pub, err := enroll.InitAuthority(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enroll.InitAuthority(keyFile); !errors.Is(err, enroll.ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	if st, _ := os.Stat(keyFile); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	fromFile, err := enroll.ParsePublicKey(keyFile + ".pub")
	if err != nil || !fromFile.Equals(pub) {
		t.Fatalf("public key file: %v", err)
	}
	key, err := enroll.LoadAuthority(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := enroll.Issue(key, enroll.IssueRequest{Domain: "pastry", Subject: "*@pastry", Peer: peer.ID("x"), Valid: time.Hour}); !errors.Is(err, domains.ErrBadCert) {
		t.Fatalf("invalid peer ID: %v", err)
	}
	p, _ := peer.Decode("12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf")
	if _, _, err := enroll.Issue(key, enroll.IssueRequest{Domain: "pastry", Subject: "*@pastry", Peer: p, Valid: time.Hour}); err != nil {
		t.Fatal(err)
	}
	certPEM, c, err := enroll.Issue(key, enroll.IssueRequest{Domain: "pastry", Subject: "*@pastry", Peer: p, Valid: time.Hour, Serial: 42})
	if err != nil || c.Serial != 42 {
		t.Fatalf("issue: %v", err)
	}
	certFile := filepath.Join(dir, "c.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := enroll.ReadCertificate(certFile, pub); err != nil || got.Serial != 42 {
		t.Fatalf("read certificate: %v", err)
	}
	listFile := filepath.Join(dir, "r.pem")
	if _, l, err := enroll.Revoke(key, listFile, "pastry", []uint64{42}); err != nil || l.Seq != 1 {
		t.Fatalf("revoke: %v", err)
	}
	_, l, err := enroll.Revoke(key, listFile, "pastry", []uint64{7})
	if err != nil || l.Seq != 2 || !l.Has(42) || !l.Has(7) {
		t.Fatalf("second revoke: %+v, %v", l, err)
	}
	if _, _, err := enroll.Revoke(key, listFile, "can", []uint64{1}); err == nil {
		t.Fatal("list of pastry reused for can")
	}
}

// TestPublish: a revocation list published through one member reaches the
// members' validators.
func TestPublish(t *testing.T) {
	dir := t.TempDir()
	pub, err := enroll.InitAuthority(filepath.Join(dir, "a.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := enroll.LoadAuthority(filepath.Join(dir, "a.key"))
	var members []*domains.Enrollment
	var first peer.AddrInfo
	for i := range 2 {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		e, _ := domains.NewEnrollment("pastry", pub)
		ov, err := domains.NewDomainOverlay(h, "pastry", domains.WithEnrollment(e))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ov.Close() })
		members = append(members, e)
		if i == 0 {
			first = peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
		} else if err := h.Connect(context.Background(), first); err != nil {
			t.Fatal(err)
		}
	}
	list, _, err := enroll.Revoke(key, filepath.Join(dir, "r.pem"), "pastry", []uint64{99})
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := peer.AddrInfoToP2pAddrs(&first)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := enroll.Publish(ctx, "pastry", pub, list, []string{addrs[0].String()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, e := range members {
		for !e.Revoked(99) {
			if time.Now().After(deadline) {
				t.Fatal("a member did not learn the revocation")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
