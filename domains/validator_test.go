package domains

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

type signer struct {
	key crypto.PrivKey
	id  peer.ID
}

func newSigner(t testing.TB) signer {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return signer{k, id}
}

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func binding(s signer, aor string, seq uint64) *Binding {
	return &Binding{
		AOR: aor, Peer: s.id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")},
		Contacts: []Contact{{URI: "sip:bob@127.0.0.1:5062", Expires: t0.Add(time.Hour)}},
		Created:  t0, Expires: t0.Add(time.Hour), Seq: seq,
	}
}

func seal(t testing.TB, b *Binding, k crypto.PrivKey) []byte {
	t.Helper()
	v, err := b.Seal(k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestBindingValidator(t *testing.T) {
	owner, other := newSigner(t), newSigner(t)
	v := BindingValidator{Domain: "pastry", Now: func() time.Time { return t0 }}
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)

	good := seal(t, binding(owner, "sip:bob@bupt.pastry", 1), owner.key)
	if err := v.Validate(key, good); err != nil {
		t.Fatalf("genuine binding rejected: %v", err)
	}
	got, err := OpenBinding(good)
	if err != nil || got.AOR != "sip:bob@bupt.pastry" || got.Peer != owner.id || len(got.Contacts) != 1 || got.Addrs[0].String() != "/ip4/127.0.0.1/tcp/4001" {
		t.Fatalf("round trip: %+v, %v", got, err)
	}

	tampered := append([]byte(nil), good...)
	tampered[len(tampered)/2] ^= 0x01

	expired := binding(owner, "sip:bob@bupt.pastry", 2)
	expired.Expires = t0.Add(-time.Second)

	tooLong := binding(owner, "sip:bob@bupt.pastry", 2)
	tooLong.Expires = t0.Add(MaxBindingLifetime + time.Hour)

	alice, _ := ParseAOR("sip:alice@pku.can")
	outside := seal(t, binding(owner, "sip:alice@pku.can", 1), owner.key)

	cases := []struct {
		name  string
		key   string
		value []byte
		want  error
	}{
		{"forged: signed by another peer", key, seal(t, binding(owner, "sip:bob@bupt.pastry", 9), other.key), ErrWrongSigner},
		{"tampered bytes", key, tampered, ErrBadRecord},
		{"expired", key, seal(t, expired, owner.key), ErrExpired},
		{"expiry beyond the maximum lifetime", key, seal(t, tooLong, owner.key), ErrBadRecord},
		{"wrong key", BindingKey(AOR{Scheme: "sip", User: "eve", Host: "bupt.pastry"}), good, ErrWrongKey},
		{"AOR outside the domain", BindingKey(alice), outside, ErrNotInDomain},
		{"garbage", key, []byte("garbage"), ErrBadRecord},
		{"too large", key, make([]byte, MaxRecordSize+1), ErrRecordTooBig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := v.Validate(c.key, c.value)
			if !errors.Is(err, c.want) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
		})
	}
}

// TestBindingSelect: the rule every storing node applies to [incoming,
// stored]. A binding of the same owner replaces by a higher sequence number;
// a binding of another owner never replaces a live one, whatever its
// Created, Seq or Expires (the old rule preferred the earliest Created:
// Created=2001 won).
func TestBindingSelect(t *testing.T) {
	owner, squatter := newSigner(t), newSigner(t)
	var conflicts int
	v := BindingValidator{Domain: "pastry", Now: func() time.Time { return t0 }, OnConflict: func(string) { conflicts++ }}
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)

	old := seal(t, binding(owner, bob.String(), 1), owner.key)
	newer := seal(t, binding(owner, bob.String(), 2), owner.key)
	tomb := binding(owner, bob.String(), 3)
	tomb.Removed, tomb.Contacts = true, nil
	tombstone := seal(t, tomb, owner.key)
	forged := binding(squatter, bob.String(), SeqAt(t0))
	forged.Created = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) // the attack of issue 15
	forged.Expires = t0.Add(MaxBindingLifetime)
	squat := seal(t, forged, squatter.key)

	check := func(name string, values [][]byte, want int) {
		t.Helper()
		got, err := v.Select(key, values)
		if err != nil || got != want {
			t.Errorf("%s: Select = %d, %v; want %d", name, got, err, want)
		}
	}
	check("higher seq of the same owner", [][]byte{old, newer}, 1)
	check("higher seq of the same owner, other order", [][]byte{newer, old}, 0)
	check("tombstone wins over older bindings", [][]byte{newer, tombstone}, 1)
	conflicts = 0
	check("a stored live binding is kept against another owner's (Created 2001, higher seq)", [][]byte{squat, old}, 1)
	check("first come, first served: a stored squat is kept too", [][]byte{old, squat}, 1)
	if conflicts != 2 {
		t.Errorf("%d conflicts reported, want 2", conflicts)
	}
	check("a tombstone frees the name for another owner", [][]byte{squat, tombstone}, 0)
	st := binding(squatter, bob.String(), 50)
	st.Removed, st.Contacts = true, nil
	check("a live binding is kept against another owner's tombstone", [][]byte{seal(t, st, squatter.key), newer}, 1)
	check("invalid values are skipped", [][]byte{[]byte("x"), old}, 1)
	if _, err := v.Select(key, [][]byte{[]byte("x")}); err == nil {
		t.Error("Select of only invalid values: want error")
	}
	ahead := binding(owner, bob.String(), SeqAt(t0.Add(MaxClockSkew+time.Second)))
	if err := v.Validate(key, seal(t, ahead, owner.key)); !errors.Is(err, ErrAhead) {
		t.Errorf("sequence number ahead of the clock: %v", err)
	}
	wrap := binding(owner, bob.String(), math.MaxUint64)
	if err := v.Validate(key, seal(t, wrap, owner.key)); !errors.Is(err, ErrAhead) {
		t.Errorf("sequence number 2^64-1: %v", err)
	}
}

// TestBindingUserKey: with a user key, any node holding the key continues
// the user's binding (the phone moved), nobody else displaces it, and the
// owner signature covers every field.
func TestBindingUserKey(t *testing.T) {
	nodeA, nodeB, eve := newSigner(t), newSigner(t), newSigner(t)
	user, err := GenerateUserKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateUserKey()
	v := BindingValidator{Domain: "pastry", Now: func() time.Time { return t0 }}
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)
	owned := func(s signer, seq uint64, k crypto.PrivKey) []byte {
		t.Helper()
		b := binding(s, bob.String(), seq)
		if err := b.SignOwner(k); err != nil {
			t.Fatal(err)
		}
		return seal(t, b, s.key)
	}
	atA := owned(nodeA, 10, user)
	atB := owned(nodeB, 11, user)
	if err := v.Validate(key, atA); err != nil {
		t.Fatalf("owned binding: %v", err)
	}
	got, _ := OpenBinding(atA)
	if got.Owner == nil || !got.Owner.Equals(user.GetPublic()) || got.OwnerID() == (&Binding{Peer: nodeA.id}).OwnerID() {
		t.Fatalf("owner not round-tripped: %+v", got)
	}
	if i, _ := v.Select(key, [][]byte{atB, atA}); i != 0 {
		t.Error("another node with the user's key and a higher seq does not take over")
	}
	if i, _ := v.Select(key, [][]byte{owned(eve, 99, other), atA}); i != 1 {
		t.Error("another user key displaced a live binding")
	}
	if i, _ := v.Select(key, [][]byte{seal(t, binding(eve, bob.String(), 99), eve.key), atA}); i != 1 {
		t.Error("a keyless binding displaced a user-owned one")
	}
	// Eve copies bob's owner key and signature onto a binding of her node.
	b, _ := OpenBinding(atB)
	b.Peer, b.Addrs = eve.id, nil
	if err := v.Validate(key, seal(t, b, eve.key)); !errors.Is(err, ErrBadOwner) {
		t.Errorf("owner signature moved to another binding: %v", err)
	}
	// Round trip of the key's users-file form.
	s, err := FormatUserKey(user)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseUserKey(s)
	if err != nil || !back.Equals(user) || strings.Contains(s, ":") {
		t.Fatalf("user key %q → %v, %v", s, back, err)
	}
	name, k, err := ParseUsersLine("bob:bupt.pastry:" + strings.Repeat("a", 32) + ":" + s)
	if err != nil || name != "bob" || !k.Equals(user) {
		t.Fatalf("users line: %q %v %v", name, k, err)
	}
	if name, k, err := ParseUsersLine("alice:pastry:" + strings.Repeat("b", 32)); err != nil || name != "alice" || k != nil {
		t.Fatalf("users line without key: %q %v %v", name, k, err)
	}
	for _, bad := range []string{"ed25519-", "ed25519-AAAA", "rsa-xyz", s + "x"} {
		if _, err := ParseUserKey(bad); !errors.Is(err, ErrBadUserKey) {
			t.Errorf("ParseUserKey(%q) = %v", bad, err)
		}
	}
}

// TestBindingSelectEnrolled: in an enrolled domain every certified claimant
// is the same owner (the authority decides); an uncertified binding is
// refused outright.
func TestBindingSelectEnrolled(t *testing.T) {
	auth, n1, n2, rogue := newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	e, err := NewEnrollment("pastry", auth.key.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	v := BindingValidator{Domain: "pastry", Now: func() time.Time { return t0 }, Enrollment: e}
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)
	cert := func(s signer) []byte {
		sub, _ := ParseSubject("*@bupt.pastry")
		c, err := (&Certificate{Domain: "pastry", Subject: sub, Peer: s.id, Serial: 1, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour)}).Seal(auth.key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	b1 := binding(n1, bob.String(), 5)
	b1.Cert = cert(n1)
	b2 := binding(n2, bob.String(), 6)
	b2.Cert = cert(n2)
	if i, err := v.Select(key, [][]byte{seal(t, b2, n2.key), seal(t, b1, n1.key)}); err != nil || i != 0 {
		t.Errorf("a certified claimant with a higher seq: %d %v", i, err)
	}
	r := binding(rogue, bob.String(), 99)
	if err := v.Validate(key, seal(t, r, rogue.key)); !errors.Is(err, ErrNoCert) {
		t.Errorf("uncertified binding: %v", err)
	}
}

// proxyFixture makes proxy records of one domain at t0.
type proxyFixture struct {
	t      *testing.T
	domain string
}

func (f proxyFixture) rec(s signer, epoch uint64, electors []signer, endorsers ...signer) *ProxyRecord {
	r := &ProxyRecord{Domain: f.domain, Signer: s.id, Epoch: epoch, Issued: t0, Expires: t0.Add(time.Minute),
		Proxies: []peer.AddrInfo{{ID: s.id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/1/quic-v1")}}}}
	for _, e := range electors {
		r.Electors = append(r.Electors, e.id)
	}
	for _, e := range endorsers {
		en, err := Endorse(e.key, f.domain, epoch, s.id)
		if err != nil {
			f.t.Fatal(err)
		}
		r.Endorsements = append(r.Endorsements, en)
	}
	return r
}

func (f proxyFixture) seal(s signer, r *ProxyRecord) []byte {
	v, err := r.Seal(s.key)
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

// TestProxyRecord: validity, and the chain of custody between records of
// different signers. The old rule let the highest epoch of any signer win
// (this test asserted that a different signer wins): an outsider took over a
// domain with epoch+1.
func TestProxyRecord(t *testing.T) {
	p1, p2 := newSigner(t), newSigner(t)
	now := func() time.Time { return t0 }
	f := proxyFixture{t, "pastry"}
	rec := func(s signer, epoch uint64, listed ...peer.ID) []byte {
		r := &ProxyRecord{Domain: "pastry", Signer: s.id, Epoch: epoch, Issued: t0, Expires: t0.Add(time.Minute)}
		for _, id := range listed {
			r.Proxies = append(r.Proxies, peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/1/quic-v1")}})
		}
		return f.seal(s, r)
	}
	gv := ProxyValidator{Global: true, Now: now}
	key := ProxyKey("pastry", true)
	if err := gv.Validate(key, rec(p1, 1, p1.id)); err != nil {
		t.Fatalf("genuine proxy record: %v", err)
	}
	if err := gv.Validate(key, rec(p1, 1, p2.id)); !errors.Is(err, ErrWrongSigner) {
		t.Fatalf("signer not listed: %v", err)
	}
	if err := gv.Validate(ProxyKey("can", true), rec(p1, 1, p1.id)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: %v", err)
	}
	lv := ProxyValidator{Domain: "can", Now: now}
	if err := lv.Validate(ProxyKey("pastry", false), rec(p1, 1, p1.id)); !errors.Is(err, ErrNotInDomain) {
		t.Fatalf("other domain in a domain overlay: %v", err)
	}
	if err := gv.Validate(key, rec(p1, MaxEpoch+1, p1.id)); !errors.Is(err, ErrAhead) {
		t.Fatalf("epoch above MaxEpoch: %v", err)
	}
	// A different signer with a higher epoch and no endorsement does not
	// replace the stored record, in either order (the stored one is kept).
	if i, err := gv.Select(key, [][]byte{rec(p2, 2, p2.id), rec(p1, 1, p1.id)}); err != nil || i != 1 {
		t.Fatalf("higher epoch of another signer replaced the stored record: %d %v", i, err)
	}
	if i, err := gv.Select(key, [][]byte{rec(p1, 2, p1.id), rec(p1, 1, p1.id)}); err != nil || i != 0 {
		t.Fatalf("same signer, higher epoch: %d %v", i, err)
	}
}

// TestProxyChainOfCustody: a new proxy replaces the record of the one
// before only with endorsements of a majority of its electors.
func TestProxyChainOfCustody(t *testing.T) {
	p, c1, c2, out := newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	f := proxyFixture{t, "pastry"}
	held := f.rec(p, 5, []signer{p, c1, c2})
	cases := []struct {
		name string
		r    *ProxyRecord
		want bool
	}{
		{"failover: c1 endorsed by c2 (both candidates)", f.rec(c1, 6, []signer{c1, c2}, c2), true},
		{"handoff: c1 endorsed by the leaving proxy", f.rec(c1, 6, []signer{c1, c2}, p), true},
		{"c1 alone (1 of the 2 candidates)", f.rec(c1, 6, []signer{c1, c2}), false},
		{"outsider with epoch 1000", f.rec(out, 1000, []signer{out}), false},
		{"outsider endorsed by itself and a non-elector", f.rec(out, 1000, []signer{out}, out, p2(t)), false},
		{"outsider with one elector (1 of the 2 candidates)", f.rec(out, 7, []signer{out}, c2), false},
		{"c1 endorsed, but a lower epoch", f.rec(c1, 4, []signer{c1, c2}, c2), false},
	}
	for _, c := range cases {
		if got := ProxySupersedes(c.r, held); got != c.want {
			t.Errorf("%s: supersedes = %v, want %v", c.name, got, c.want)
		}
	}
	// A proxy with one candidate: the proxy that died cannot endorse, so the candidate
	// takes over alone; nobody else does. A record naming no candidate changes hands only
	// by a handoff.
	small := f.rec(p, 5, []signer{p, c1})
	for _, c := range []struct {
		name    string
		r, held *ProxyRecord
		want    bool
	}{
		{"failover of a proxy and one candidate", f.rec(c1, 6, []signer{c1}), small, true},
		{"outsider against a proxy and one candidate", f.rec(out, 9, []signer{out}), small, false},
		{"outsider endorsed by a non-elector", f.rec(out, 9, []signer{out}, p2(t)), small, false},
		{"a record naming no candidate: no failover", f.rec(c1, 6, []signer{c1}), f.rec(p, 5, []signer{p}), false},
		{"a record naming no candidate: handoff", f.rec(c1, 6, []signer{c1}, p), f.rec(p, 5, []signer{p}), true},
	} {
		if got := ProxySupersedes(c.r, c.held); got != c.want {
			t.Errorf("%s: supersedes = %v, want %v", c.name, got, c.want)
		}
	}
	// An endorsement for another epoch or signer does not count.
	r := f.rec(c1, 6, []signer{c1})
	en, _ := Endorse(c2.key, "pastry", 5, c1.id)
	r.Endorsements = []Endorsement{en}
	if ProxySupersedes(r, held) {
		t.Error("an endorsement of another epoch counted")
	}
	// Storing and lookups: the validator applies the same rule.
	gv := ProxyValidator{Global: true, Now: func() time.Time { return t0 }}
	key := ProxyKey("pastry", true)
	if i, _ := gv.Select(key, [][]byte{f.seal(c1, f.rec(c1, 6, []signer{c1, c2}, c2)), f.seal(p, held)}); i != 0 {
		t.Error("endorsed successor not stored")
	}
}

func p2(t *testing.T) signer { return newSigner(t) }

// TestProxyRecordEnrolled: an enrolled domain's record names its authority
// and carries the signer's certificate; a validator that knows the
// authority refuses any other, and records of another authority are
// another claimant.
func TestProxyRecordEnrolled(t *testing.T) {
	auth, rogueAuth, p, rogue := newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	f := proxyFixture{t, "pastry"}
	certFor := func(a, s signer) []byte {
		sub, _ := ParseSubject("proxy@pastry")
		c, err := (&Certificate{Domain: "pastry", Subject: sub, Peer: s.id, Serial: 3, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour)}).Seal(a.key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := f.rec(p, 1, []signer{p})
	good.Authority, good.Cert = auth.key.GetPublic(), certFor(auth, p)
	noCert := f.rec(rogue, 9, []signer{rogue})
	noCert.Authority = auth.key.GetPublic()
	own := f.rec(rogue, 9, []signer{rogue})
	own.Authority, own.Cert = rogueAuth.key.GetPublic(), certFor(rogueAuth, rogue)
	now := func() time.Time { return t0 }
	key := ProxyKey("pastry", true)
	knows := ProxyValidator{Global: true, Now: now, Authorities: map[string]crypto.PubKey{"pastry": auth.key.GetPublic()}}
	stranger := ProxyValidator{Global: true, Now: now}
	if err := knows.Validate(key, f.seal(p, good)); err != nil {
		t.Fatalf("certified record: %v", err)
	}
	if err := knows.Validate(key, f.seal(rogue, noCert)); !errors.Is(err, ErrNoCert) {
		t.Errorf("record without certificate: %v", err)
	}
	if err := knows.Validate(key, f.seal(rogue, own)); !errors.Is(err, ErrWrongAuthority) {
		t.Errorf("record of a rogue authority at a node that knows the domain's: %v", err)
	}
	if err := knows.Validate(key, f.seal(p, f.rec(p, 1, []signer{p}))); !errors.Is(err, ErrWrongAuthority) {
		t.Errorf("record of an enrolled domain without authority: %v", err)
	}
	if err := stranger.Validate(key, f.seal(rogue, own)); err != nil {
		t.Errorf("a self-consistent record at a node that does not know the domain: %v", err)
	}
	if i, _ := stranger.Select(key, [][]byte{f.seal(rogue, own), f.seal(p, good)}); i != 1 {
		t.Error("a record of another authority replaced the stored chain")
	}
}
