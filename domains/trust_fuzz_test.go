package domains

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// FuzzProxyRecord: opening and validating proxy records (open, enrolled,
// with electors and endorsements) never panics; the chain of custody
// never lets a record replace a stored one of another signer unless a
// majority of the stored record's electors endorse it.
func FuzzProxyRecord(f *testing.F) {
	auth, p, c := newSigner(f), newSigner(f), newSigner(f)
	e, err := NewEnrollment("pastry", auth.key.GetPublic())
	if err != nil {
		f.Fatal(err)
	}
	mk := func(s signer, epoch uint64, endorsers ...signer) *ProxyRecord {
		r := &ProxyRecord{Domain: "pastry", Signer: s.id, Epoch: epoch, Electors: []peer.ID{p.id, c.id},
			Proxies: []peer.AddrInfo{{ID: s.id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}}},
			Issued:  t0, Expires: t0.Add(time.Minute)}
		for _, en := range endorsers {
			x, err := Endorse(en.key, "pastry", epoch, s.id)
			if err != nil {
				f.Fatal(err)
			}
			r.Endorsements = append(r.Endorsements, x)
		}
		return r
	}
	stored := mk(p, 3)
	storedVal, err := stored.Seal(p.key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(storedVal)
	if v, err := mk(c, 4, p).Seal(c.key); err == nil {
		f.Add(v)
	}
	sub, _ := ParseSubject("proxy@pastry")
	cert, err := (&Certificate{Domain: "pastry", Subject: sub, Peer: p.id, Serial: 1, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour)}).Seal(auth.key)
	if err != nil {
		f.Fatal(err)
	}
	enr := mk(p, 5, c)
	enr.Authority, enr.Cert = auth.key.GetPublic(), cert
	if v, err := enr.Seal(p.key); err == nil {
		f.Add(v)
	}
	f.Add([]byte{})
	now := func() time.Time { return t0 }
	vals := []ProxyValidator{{Global: true, Now: now}, {Domain: "pastry", Now: now, Enrollment: e}}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := OpenProxyRecord(data)
		if err == nil {
			_ = r.Endorsed(stored)
			if r.Signer != stored.Signer && ProxySupersedes(r, stored) && r.Endorsed(stored) <= len(stored.Electors)/2 {
				t.Fatalf("a record of %s replaces the stored one without a majority", r.Signer)
			}
		}
		for _, v := range vals {
			for _, key := range []string{ProxyKey("pastry", true), ProxyKey("pastry", false)} {
				_ = v.Validate(key, data)
				_, _ = v.Select(key, [][]byte{data, storedVal})
				_, _ = v.Select(key, [][]byte{storedVal, data})
			}
		}
	})
}

// FuzzUsersLine: users-file lines and user keys parse without panicking,
// and a parsed key formats back to what parses to it.
func FuzzUsersLine(f *testing.F) {
	k, _ := GenerateUserKey()
	s, _ := FormatUserKey(k)
	for _, line := range []string{"bob:pastry:0123456789abcdef0123456789abcdef:" + s, "alice:pastry:0123456789abcdef0123456789abcdef", "#", "", "a:b:c:d:e", "x:y:z:ed25519-"} {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		_, key, err := ParseUsersLine(line)
		if err != nil || key == nil {
			return
		}
		s, err := FormatUserKey(key)
		if err != nil {
			t.Fatalf("format a parsed key: %v", err)
		}
		back, err := ParseUserKey(s)
		if err != nil || !back.Equals(key) {
			t.Fatalf("%q does not round-trip: %v", s, err)
		}
	})
}

// FuzzKadType: the lookup limiter reads the type of any kad-dht message
// without panicking.
func FuzzKadType(f *testing.F) {
	f.Add([]byte{0x08, 0x01, 0x12, 0x03, 'k', 'e', 'y'})
	f.Add([]byte{0x12, 0x00, 0x08, 0x04})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) { _ = kadType(b) })
}
