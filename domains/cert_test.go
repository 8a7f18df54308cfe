package domains

import (
	"errors"
	"testing"
	"time"
)

func TestParseSubject(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"sip:bob@bupt.pastry", "sip:bob@bupt.pastry"},
		{"bob@BUPT.Pastry", "sip:bob@bupt.pastry"},
		{"*@bupt.pastry", "sip:*@bupt.pastry"},
		{"sips:alice-[0-9]*@pastry", "sip:alice-[0-9]*@pastry"},
	} {
		s, err := ParseSubject(tc.in)
		if err != nil || s.String() != tc.want {
			t.Errorf("ParseSubject(%q) = %v, %v; want %s", tc.in, s, err, tc.want)
		}
	}
	for _, bad := range []string{"", "bob", "@pastry", "bob@", "b[ob@pastry", "bob;x@pastry", "bob@global", "a:b@pastry"} {
		if _, err := ParseSubject(bad); !errors.Is(err, ErrBadSubject) {
			t.Errorf("ParseSubject(%q) = %v, want ErrBadSubject", bad, err)
		}
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, tc := range []struct {
		sub, aor string
		want     bool
	}{
		{"sip:bob@bupt.pastry", "sip:bob@bupt.pastry", true},
		{"sip:bob@bupt.pastry", "sip:Bob@bupt.pastry", false},
		{"sip:bob@bupt.pastry", "sip:bob@pastry", false},
		{"sip:*@bupt.pastry", "sip:carol@bupt.pastry", true},
		{"sip:*@bupt.pastry", "sip:carol@x.bupt.pastry", false},
		{"sip:alice-?@pastry", "sip:alice-1@pastry", true},
		{"sip:alice-?@pastry", "sip:alice-12@pastry", false},
		{"sip:bob@bupt.pastry", "sips:bob@bupt.pastry", true},
	} {
		s, err := ParseSubject(tc.sub)
		if err != nil {
			t.Fatal(err)
		}
		a, err := ParseAOR(tc.aor)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Matches(a); got != tc.want {
			t.Errorf("%s matches %s = %v, want %v", tc.sub, tc.aor, got, tc.want)
		}
	}
}

func issue(t testing.TB, auth signer, subject string, p signer, serial uint64, from, until time.Time) []byte {
	t.Helper()
	sub, err := ParseSubject(subject)
	if err != nil {
		t.Fatal(err)
	}
	c := Certificate{Domain: "pastry", Subject: sub, Peer: p.id, Serial: serial, NotBefore: from, NotAfter: until}
	data, err := c.Seal(auth.key)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCertificateSealOpenVerify(t *testing.T) {
	auth, node, other := newSigner(t), newSigner(t), newSigner(t)
	data := issue(t, auth, "sip:*@bupt.pastry", node, 7, t0.Add(-time.Hour), t0.Add(time.Hour))
	if len(data) > MaxCertSize {
		t.Fatalf("certificate of %d bytes", len(data))
	}
	c, err := OpenCertificate(data, auth.key.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	if c.Serial != 7 || c.Peer != node.id || c.Subject.String() != "sip:*@bupt.pastry" || !c.NotAfter.Equal(t0.Add(time.Hour)) {
		t.Fatalf("round trip: %+v", c)
	}
	if _, err := OpenCertificate(data, other.key.GetPublic()); !errors.Is(err, ErrBadCert) {
		t.Fatalf("other authority: %v", err)
	}
	if _, err := OpenCertificate(nil, auth.key.GetPublic()); !errors.Is(err, ErrNoCert) {
		t.Fatalf("empty: %v", err)
	}
	tampered := append([]byte(nil), data...)
	tampered[len(tampered)/2] ^= 1
	if _, err := OpenCertificate(tampered, auth.key.GetPublic()); err == nil {
		t.Fatal("tampered certificate accepted")
	}
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	if err := c.Verify("pastry", bob, node.id, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify("pastry", bob, other.id, t0); !errors.Is(err, ErrCertMismatch) {
		t.Fatalf("other peer: %v", err)
	}
	if err := c.Verify("can", bob, node.id, t0); !errors.Is(err, ErrCertMismatch) {
		t.Fatalf("other domain: %v", err)
	}
	if err := c.Verify("pastry", bob, node.id, t0.Add(time.Hour)); !errors.Is(err, ErrCertExpired) {
		t.Fatalf("at expiry: %v", err)
	}
	if err := c.Verify("pastry", bob, node.id, t0.Add(-2*time.Hour)); !errors.Is(err, ErrCertExpired) {
		t.Fatalf("before validity: %v", err)
	}
	// The authority cannot issue outside its domain or for nonsense validity.
	sub, _ := ParseSubject("sip:bob@can")
	if _, err := (&Certificate{Domain: "pastry", Subject: sub, Peer: node.id, NotBefore: t0, NotAfter: t0.Add(time.Hour)}).Seal(auth.key); !errors.Is(err, ErrBadCert) {
		t.Fatalf("subject outside domain: %v", err)
	}
	sub, _ = ParseSubject("sip:bob@pastry")
	if _, err := (&Certificate{Domain: "pastry", Subject: sub, Peer: node.id, NotBefore: t0, NotAfter: t0}).Seal(auth.key); !errors.Is(err, ErrBadCert) {
		t.Fatalf("empty validity: %v", err)
	}
}

func TestRevocationList(t *testing.T) {
	auth, other := newSigner(t), newSigner(t)
	e, err := NewEnrollment("pastry", auth.key.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	l1 := RevocationList{Domain: "pastry"}.Revoke(t0, 9, 3, 9)
	if l1.Seq != 1 || len(l1.Serials) != 2 || !l1.Has(3) || !l1.Has(9) || l1.Has(4) {
		t.Fatalf("list: %+v", l1)
	}
	d1, err := l1.Seal(auth.key)
	if err != nil {
		t.Fatal(err)
	}
	l2 := l1.Revoke(t0, 4)
	d2, _ := l2.Seal(auth.key)
	forged, _ := l2.Revoke(t0, 5).Seal(other.key)
	if _, err := e.AddRevocationList(forged); err == nil {
		t.Fatal("list of another signer accepted")
	}
	if ok, err := e.AddRevocationList(d2); !ok || err != nil {
		t.Fatalf("add seq 2: %v %v", ok, err)
	}
	if ok, _ := e.AddRevocationList(d1); ok {
		t.Fatal("older list replaced a newer one")
	}
	if !e.Revoked(4) || !e.Revoked(3) || e.Revoked(5) {
		t.Fatal("revoked serials wrong")
	}
	v := RevocationValidator{Enrollment: e}
	key := RevocationKey("pastry")
	if err := v.Validate(key, d1); err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(RevocationKey("can"), d1); err == nil {
		t.Fatal("list under another domain's key accepted")
	}
	if i, err := v.Select(key, [][]byte{d1, forged, d2}); i != 2 || err != nil {
		t.Fatalf("select = %d, %v", i, err)
	}
}

func TestEnrolledBindingValidator(t *testing.T) {
	auth, node, thief := newSigner(t), newSigner(t), newSigner(t)
	e, err := NewEnrollment("pastry", auth.key.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	v := BindingValidator{Domain: "pastry", Now: func() time.Time { return now }, Enrollment: e}
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)

	b := binding(node, bob.String(), 1)
	if err := v.Validate(key, seal(t, b, node.key)); !errors.Is(err, ErrNoCert) {
		t.Fatalf("binding without certificate: %v", err)
	}
	b.Cert = issue(t, auth, "sip:bob@bupt.pastry", node, 1, t0.Add(-time.Hour), t0.Add(30*time.Minute))
	good := seal(t, b, node.key)
	if err := v.Validate(key, good); err != nil {
		t.Fatalf("certified binding rejected: %v", err)
	}
	// Another node cannot reuse the certificate: it names node's peer ID.
	tb := binding(thief, bob.String(), 1)
	tb.Cert = b.Cert
	stolen := seal(t, tb, thief.key)
	if err := v.Validate(key, stolen); !errors.Is(err, ErrCertMismatch) {
		t.Fatalf("stolen certificate: %v", err)
	}
	if i, err := v.Select(key, [][]byte{stolen, good}); i != 1 || err != nil {
		t.Fatalf("select = %d, %v", i, err)
	}
	// A certificate for alice does not cover bob.
	ab := binding(node, bob.String(), 2)
	ab.Cert = issue(t, auth, "sip:alice@bupt.pastry", node, 2, t0.Add(-time.Hour), t0.Add(time.Hour))
	if err := v.Validate(key, seal(t, ab, node.key)); !errors.Is(err, ErrCertMismatch) {
		t.Fatalf("certificate of another AOR: %v", err)
	}
	// Expiry of the certificate ends the binding before the binding's own expiry.
	now = t0.Add(31 * time.Minute)
	if err := v.Validate(key, good); !errors.Is(err, ErrCertExpired) {
		t.Fatalf("expired certificate: %v", err)
	}
	now = t0
	rl, _ := RevocationList{Domain: "pastry"}.Revoke(t0, 1).Seal(auth.key)
	if _, err := e.AddRevocationList(rl); err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(key, good); !errors.Is(err, ErrCertRevoked) {
		t.Fatalf("revoked certificate: %v", err)
	}
}
