package domains

import (
	"errors"
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

func TestBindingSelect(t *testing.T) {
	owner, squatter := newSigner(t), newSigner(t)
	v := BindingValidator{Domain: "pastry", Now: func() time.Time { return t0 }}
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)

	old := seal(t, binding(owner, bob.String(), 1), owner.key)
	newer := seal(t, binding(owner, bob.String(), 2), owner.key)
	tomb := binding(owner, bob.String(), 3)
	tomb.Removed, tomb.Contacts = true, nil
	tombstone := seal(t, tomb, owner.key)
	later := binding(squatter, bob.String(), 100)
	later.Created = t0.Add(time.Minute)
	squat := seal(t, later, squatter.key)

	check := func(name string, values [][]byte, want int) {
		t.Helper()
		got, err := v.Select(key, values)
		if err != nil || got != want {
			t.Errorf("%s: Select = %d, %v; want %d", name, got, err, want)
		}
	}
	check("higher seq of the same signer", [][]byte{old, newer}, 1)
	check("higher seq of the same signer, other order", [][]byte{newer, old}, 0)
	check("tombstone wins over older bindings", [][]byte{newer, tombstone}, 1)
	check("first registration wins over a later signer", [][]byte{squat, old}, 1)
	check("first registration wins over a later signer, other order", [][]byte{old, squat}, 0)
	check("a live binding wins over another signer's tombstone", [][]byte{tombstone, squat}, 1)
	check("invalid values are skipped", [][]byte{[]byte("x"), old}, 1)
	if _, err := v.Select(key, [][]byte{[]byte("x")}); err == nil {
		t.Error("Select of only invalid values: want error")
	}
}

func TestProxyRecord(t *testing.T) {
	p1, p2 := newSigner(t), newSigner(t)
	now := func() time.Time { return t0 }
	rec := func(s signer, epoch uint64, listed ...peer.ID) []byte {
		r := &ProxyRecord{Domain: "pastry", Signer: s.id, Epoch: epoch, Issued: t0, Expires: t0.Add(time.Minute)}
		for _, id := range listed {
			r.Proxies = append(r.Proxies, peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/1/quic-v1")}})
		}
		v, err := r.Seal(s.key)
		if err != nil {
			t.Fatal(err)
		}
		return v
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
	if i, err := gv.Select(key, [][]byte{rec(p1, 1, p1.id), rec(p2, 2, p2.id)}); err != nil || i != 1 {
		t.Fatalf("higher epoch: %d %v", i, err)
	}
}
