package node

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipua"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testAuthority is a domain authority of a test.
type testAuthority struct {
	key    crypto.PrivKey
	serial uint64
	list   domains.RevocationList
}

func newTestAuthority(t testing.TB, domain string) *testAuthority {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testAuthority{key: k, list: domains.RevocationList{Domain: domain}}
}

// issue returns a PEM certificate for subject and p, valid until until, and its serial.
func (a *testAuthority) issue(t testing.TB, subject string, p peer.ID, until time.Time) ([]byte, uint64) {
	t.Helper()
	sub, err := domains.ParseSubject(subject)
	if err != nil {
		t.Fatal(err)
	}
	a.serial++
	c := domains.Certificate{Domain: a.list.Domain, Subject: sub, Peer: p, Serial: a.serial,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: until}
	data, err := c.Seal(a.key)
	if err != nil {
		t.Fatal(err)
	}
	return domains.EncodePEM(domains.PEMCertificate, data), a.serial
}

func (a *testAuthority) revoke(t testing.TB, serials ...uint64) []byte {
	t.Helper()
	a.list = a.list.Revoke(time.Now(), serials...)
	data, err := a.list.Seal(a.key)
	if err != nil {
		t.Fatal(err)
	}
	return domains.EncodePEM(domains.PEMRevocationList, data)
}

// newTestHost returns a loopback libp2p host, closed at the end of the test.
func newTestHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings(loopback...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// skewClock is the system clock, read ahead by as much as the test moved it:
// shared by the nodes of a test, whose timers keep running in real time.
type skewClock struct {
	clock.Clock
	skew atomic.Int64
}

func newSkewClock() *skewClock                       { return &skewClock{Clock: clock.New()} }
func (c *skewClock) Now() time.Time                  { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *skewClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *skewClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }
func (c *skewClock) advance(d time.Duration)         { c.skew.Add(int64(d)) }

// startEnrolledNode adds hiersip to h in domain, with the enrollment of
// auth (nil: an open-domain node, as a rogue would run) and certs.
func startEnrolledNode(t testing.TB, h host.Host, domain string, auth *testAuthority, clock *skewClock, boot []string, sip *SIPConfig, certs ...[]byte) *Node {
	t.Helper()
	cfg := Config{Domain: domain, Logger: quiet, Election: ElectionConfig{Disable: true}, Clock: clock,
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: boot}, SIP: sip}
	if auth != nil {
		cfg.Enrollment = &EnrollmentConfig{Authority: auth.key.GetPublic(), Certificates: certs, RefreshInterval: 200 * time.Millisecond}
	}
	n, err := NewWithHost(context.Background(), h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestEnrolledDomain: in an enrolled domain a node without a certificate
// cannot register an AOR, not even a free one, not even by storing a
// binding behind the validator's back; a certified node can; an expired or
// revoked certificate stops working for every node.
func TestEnrolledDomain(t *testing.T) {
	const domain = "pastry"
	auth := newTestAuthority(t, domain)
	clock := newSkewClock()
	hs := []host.Host{newTestHost(t), newTestHost(t), newTestHost(t), newTestHost(t)}
	aliceCert, _ := auth.issue(t, "sip:alice@bupt.pastry", hs[0].ID(), time.Now().Add(30*time.Minute))
	wildCert, wildSerial := auth.issue(t, "sip:*@bupt.pastry", hs[1].ID(), time.Now().Add(24*time.Hour))

	n0 := startEnrolledNode(t, hs[0], domain, auth, clock, nil, nil, aliceCert)
	boot := []string{p2pAddr(t, hs[0])}
	n1 := startEnrolledNode(t, hs[1], domain, auth, clock, boot, nil, wildCert)
	n2 := startEnrolledNode(t, hs[2], domain, auth, clock, boot, nil) // enrolled, no certificate
	rogue := startEnrolledNode(t, hs[3], domain, nil, clock, boot, nil)
	nodes := []*Node{n0, n1, n2, rogue}
	for _, n := range nodes {
		waitJoined(t, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// No certificate: Register refuses, with an error the SIP bridge maps to 403.
	carol := mustAOR(t, "sip:carol@bupt.pastry")
	err := n2.Register(ctx, carol, contact("sip:carol@127.0.0.1:6002", time.Hour))
	if !errors.Is(err, ErrNoCertificate) || !errors.Is(err, sipbridge.ErrForbidden) {
		t.Fatalf("register without certificate: %v", err)
	}
	// A certificate for alice does not cover carol.
	if err := n0.Register(ctx, carol, contact("sip:carol@127.0.0.1:6000", time.Hour)); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("register outside the certificate's subject: %v", err)
	}
	// Behind the node's back: a binding without a certificate is rejected by
	// the validator, locally and at every enrolled peer...
	b := &domains.Binding{AOR: carol.String(), Peer: n2.ID(), Addrs: n2.Host().Addrs(),
		Contacts: contact("sip:carol@127.0.0.1:6002", time.Hour), Created: time.Now(), Expires: time.Now().Add(time.Hour), Seq: 1}
	if err := n2.domain.PutBinding(ctx, n2.key, b); !errors.Is(err, domains.ErrNoCert) {
		t.Fatalf("uncertified binding stored: %v", err)
	}
	// ...and a rogue node that runs without enrollment keeps it only in its own store.
	rb := *b
	rb.Peer = rogue.ID()
	_ = rogue.domain.PutBinding(ctx, rogue.key, &rb)

	// A certified node registers carol and everybody finds it.
	if err := n1.Register(ctx, carol, contact("sip:carol@127.0.0.1:6001", time.Hour)); err != nil {
		t.Fatalf("certified register: %v", err)
	}
	alice := mustAOR(t, "sip:alice@bupt.pastry")
	if err := n0.Register(ctx, alice, contact("sip:alice@127.0.0.1:6000", time.Hour)); err != nil {
		t.Fatalf("certified register: %v", err)
	}
	for _, n := range []*Node{n0, n2} {
		eventually(t, 10*time.Second, "lookup of carol", func() error {
			got, err := n.Lookup(ctx, carol)
			if err != nil {
				return err
			}
			if got.Peer != n1.ID() {
				return errors.New("carol resolves to " + got.Peer.String())
			}
			return nil
		})
		eventually(t, 10*time.Second, "lookup of alice", func() error {
			_, err := n.Lookup(ctx, alice)
			return err
		})
	}

	// Revocation: the authority revokes n1's certificate; n2 publishes the
	// list (any member may). Every enrolled node stops accepting carol.
	if err := n2.PublishRevocationList(ctx, auth.revoke(t, wildSerial)); err != nil {
		t.Fatalf("publish revocation list: %v", err)
	}
	for _, n := range []*Node{n0, n1, n2} {
		eventually(t, 10*time.Second, "revocation reaches "+n.ID().ShortString(), func() error {
			if !n.Enrollment().Revoked(wildSerial) {
				return errors.New("not revoked yet")
			}
			return nil
		})
	}
	for _, n := range []*Node{n0, n2} {
		if got, err := n.Lookup(ctx, carol); !errors.Is(err, domains.ErrNotFound) {
			t.Fatalf("lookup of carol after revocation: %v, %v", got, err)
		}
	}
	err = n1.Register(ctx, carol, contact("sip:carol@127.0.0.1:6001", time.Hour))
	if !errors.Is(err, ErrNoCertificate) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("register with revoked certificate: %v", err)
	}

	// Expiry: alice's certificate lapses after 30 minutes, her binding's
	// contacts an hour. Move every node's clock past the certificate.
	clock.advance(45 * time.Minute)
	for _, n := range []*Node{n1, n2} {
		if got, err := n.Lookup(ctx, alice); !errors.Is(err, domains.ErrNotFound) {
			t.Fatalf("lookup of alice after her certificate expired: %v, %v", got, err)
		}
	}
	err = n0.Register(ctx, alice, contact("sip:alice@127.0.0.1:6000", time.Hour))
	if !errors.Is(err, ErrNoCertificate) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("register with expired certificate: %v", err)
	}
}

// TestEnrolledRegisterForbidden: a UA's REGISTER at a node without a
// certificate for its AOR gets 403 naming the reason.
func TestEnrolledRegisterForbidden(t *testing.T) {
	auth := newTestAuthority(t, "pastry")
	h := newTestHost(t)
	cert, _ := auth.issue(t, "sip:alice@pastry", h.ID(), time.Now().Add(time.Hour))
	n := startEnrolledNode(t, h, "pastry", auth, newSkewClock(), nil, &SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"}, cert)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ua, err := sipua.NewUA("sip:mallory@pastry", n.Bridge().UDPAddr(), sipua.WithUALogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	res, err := ua.Register(ctx, time.Hour)
	if err == nil || res == nil || res.StatusCode != 403 || !strings.Contains(res.Reason, "enrollment certificate") {
		t.Fatalf("REGISTER of an uncertified AOR: %v, %v", res, err)
	}
	t.Logf("answer: %d %s", res.StatusCode, res.Reason)
	ok, err := sipua.NewUA("sip:alice@pastry", n.Bridge().UDPAddr(), sipua.WithUALogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	if _, err := ok.Register(ctx, time.Hour); err != nil {
		t.Fatalf("REGISTER of a certified AOR: %v", err)
	}
}

func TestEnrollmentConfigErrors(t *testing.T) {
	auth := newTestAuthority(t, "pastry")
	other := newTestAuthority(t, "pastry")
	h := newTestHost(t)
	foreign, _ := other.issue(t, "sip:alice@pastry", h.ID(), time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name  string
		ec    EnrollmentConfig
		field string
	}{
		{"no authority", EnrollmentConfig{}, "enrollment.authority"},
		{"foreign certificate", EnrollmentConfig{Authority: auth.key.GetPublic(), Certificates: [][]byte{foreign}}, "enrollment.certificates[0]"},
		{"garbage list", EnrollmentConfig{Authority: auth.key.GetPublic(), RevocationList: []byte("x")}, "enrollment.revocation_list"},
	} {
		_, err := NewWithHost(context.Background(), h, Config{Domain: "pastry", Logger: quiet, Enrollment: &tc.ec})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: %v, want a ConfigError of %s", tc.name, err, tc.field)
		}
	}
}
