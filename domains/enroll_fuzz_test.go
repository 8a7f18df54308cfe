package domains

import (
	"testing"
	"time"
)

// fuzzFixture is a fixed authority and node, so that seeds stay valid.
func fuzzFixture(f *testing.F) (auth, node signer, e *Enrollment) {
	f.Helper()
	auth, node = newSigner(f), newSigner(f)
	e, err := NewEnrollment("pastry", auth.key.GetPublic())
	if err != nil {
		f.Fatal(err)
	}
	return auth, node, e
}

// FuzzBindingValidator: decoding and validating a binding record, open or
// enrolled, never panics, and what validates opens to a binding under its key.
func FuzzBindingValidator(f *testing.F) {
	auth, node, e := fuzzFixture(f)
	b := binding(node, "sip:bob@bupt.pastry", 1)
	f.Add(seal(f, b, node.key))
	sub, _ := ParseSubject("*@bupt.pastry")
	cert, err := (&Certificate{Domain: "pastry", Subject: sub, Peer: node.id, Serial: 1, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour)}).Seal(auth.key)
	if err != nil {
		f.Fatal(err)
	}
	b.Cert = cert
	f.Add(seal(f, b, node.key))
	b.Removed, b.Contacts = true, nil
	f.Add(seal(f, b, node.key))
	owned := binding(node, "sip:bob@bupt.pastry", 2)
	if uk, err := GenerateUserKey(); err == nil && owned.SignOwner(uk) == nil {
		f.Add(seal(f, owned, node.key))
	}
	f.Add([]byte{})
	f.Add([]byte("\x0a\x00"))
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)
	now := func() time.Time { return t0 }
	open := BindingValidator{Domain: "pastry", Now: now}
	enrolled := BindingValidator{Domain: "pastry", Now: now, Enrollment: e}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range []BindingValidator{open, enrolled} {
			if err := v.Validate(key, data); err == nil {
				if _, err := OpenBinding(data); err != nil {
					t.Fatalf("valid record does not open: %v", err)
				}
			}
			_, _ = v.Select(key, [][]byte{data, data})
		}
		_, _ = OpenBinding(data)
	})
}

// FuzzCertificate: opening and verifying certificates never panics, and an
// opened certificate is internally consistent.
func FuzzCertificate(f *testing.F) {
	auth, node, e := fuzzFixture(f)
	for _, s := range []string{"sip:bob@bupt.pastry", "*@pastry", "a[0-9]?@x.pastry"} {
		sub, err := ParseSubject(s)
		if err != nil {
			f.Fatal(err)
		}
		c, err := (&Certificate{Domain: "pastry", Subject: sub, Peer: node.id, Serial: 7, NotBefore: t0, NotAfter: t0.Add(time.Hour)}).Seal(auth.key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c)
	}
	l, _ := RevocationList{Domain: "pastry"}.Revoke(t0, 7, 8).Seal(auth.key)
	f.Add(l)
	f.Add([]byte{})
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	pub := auth.key.GetPublic()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := OpenCertificate(data, pub)
		if err == nil {
			if c.Domain != "pastry" && !hostInDomain(c.Subject.Host, c.Domain) {
				t.Fatalf("opened certificate outside its domain: %+v", c)
			}
			_ = c.Verify("pastry", bob, node.id, t0)
		}
		_, _ = e.VerifyCert(data, bob, node.id, t0)
		_, _ = e.AddRevocationList(data)
		_, _ = RevocationValidator{Enrollment: e}.Select(RevocationKey("pastry"), [][]byte{data})
	})
}

// FuzzParseSubject: subjects parse without panicking, and a parsed subject
// re-parses to itself.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"sip:bob@bupt.pastry", "*@pastry", "sips:a-[0-9]*@pastry", "[", "@", "sip:@"} {
		f.Add(s, "sip:bob@pastry")
	}
	f.Fuzz(func(t *testing.T, s, aor string) {
		sub, err := ParseSubject(s)
		if err != nil {
			return
		}
		again, err := ParseSubject(sub.String())
		if err != nil || again != sub {
			t.Fatalf("%q → %q → %v, %v", s, sub, again, err)
		}
		if a, err := ParseAOR(aor); err == nil {
			_ = sub.Matches(a)
		}
	})
}
