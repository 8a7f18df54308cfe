package domains

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"
)

var alice, _ = ParseAOR("sip:alice@pastry")

// entry returns a signed entry of s for alice with n devices registered
// until t0+1h, at entry sequence number seq.
func entry(t testing.TB, s signer, seq uint64, n int) DeviceEntry {
	t.Helper()
	e := DeviceEntry{Peer: s.id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")},
		Expires: t0.Add(time.Hour), Seq: seq}
	for i := range n {
		e.Devices = append(e.Devices, DeviceRef{Tag: InstanceTag(alice, "<urn:uuid:"+s.id.String()[:8]+string(rune('a'+i))+">"),
			Since: t0.Add(-time.Minute), Expires: t0.Add(time.Hour)})
	}
	if err := e.SignEntry(alice, s.key); err != nil {
		t.Fatal(err)
	}
	return e
}

// devSet returns a set of alice written by w with the given entries,
// owner-signed with uk unless it is nil.
func devSet(t testing.TB, w signer, seq uint64, uk crypto.PrivKey, es ...DeviceEntry) *DeviceSet {
	t.Helper()
	s := &DeviceSet{AOR: alice.String(), Writer: w.id, Seq: seq, Expires: t0.Add(time.Hour), Entries: es}
	if len(es) == 0 {
		s.Expires = t0.Add(DeviceTombstone)
	}
	if uk != nil {
		if err := s.SignOwner(uk); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func sealSet(t testing.TB, s *DeviceSet, k crypto.PrivKey) []byte {
	t.Helper()
	v, err := s.Seal(k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDeviceSetValidator(t *testing.T) {
	a, b, c := newSigner(t), newSigner(t), newSigner(t)
	uk, _ := GenerateUserKey()
	v := DeviceSetValidator{Domain: "pastry", Now: func() time.Time { return t0 }}
	key := DeviceSetKey(alice)
	good := devSet(t, a, 10, uk, entry(t, a, 5, 2), entry(t, b, 7, 1))
	if err := v.Validate(key, sealSet(t, good, a.key)); err != nil {
		t.Fatalf("a valid set of two nodes: %v", err)
	}
	got, _ := v.Open(key, sealSet(t, good, a.key))
	if len(got.Entries) != 2 || len(got.Entries[0].Devices) != 2 || !got.Live(t0) {
		t.Fatalf("round trip: %+v", got)
	}

	tampered := entry(t, b, 7, 1)
	tampered.Devices[0].Expires = t0.Add(30 * time.Minute) // not what b signed
	bob, _ := ParseAOR("sip:bob@pastry")
	otherAOR := entry(t, b, 7, 1)
	if err := otherAOR.SignEntry(bob, b.key); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		value func() []byte
		key   string
		want  error
	}{
		{"an entry changed by the writer", func() []byte { return sealSet(t, devSet(t, a, 10, uk, entry(t, a, 5, 1), tampered), a.key) }, key, ErrWrongSigner},
		{"an entry signed for another AOR", func() []byte { return sealSet(t, devSet(t, a, 10, uk, otherAOR), a.key) }, key, ErrWrongSigner},
		{"an entry signed by another node", func() []byte {
			e := entry(t, b, 7, 1)
			e.Peer = c.id
			return sealSet(t, devSet(t, a, 10, uk, e), a.key)
		}, key, ErrWrongSigner},
		{"sealed by another node than its writer", func() []byte { return sealSet(t, devSet(t, a, 10, uk, entry(t, a, 5, 1)), c.key) }, key, ErrWrongSigner},
		{"owner signature of another set", func() []byte {
			s := devSet(t, a, 10, uk, entry(t, a, 5, 1))
			s.Seq = 11
			return sealSet(t, s, a.key)
		}, key, ErrBadOwner},
		{"under another AOR's key", func() []byte { return sealSet(t, good, a.key) }, DeviceSetKey(bob), ErrWrongKey},
		{"under the binding's key", func() []byte { return sealSet(t, good, a.key) }, BindingKey(alice), ErrWrongKey},
		{"keyless, listing another node", func() []byte { return sealSet(t, devSet(t, a, 10, nil, entry(t, b, 5, 1)), a.key) }, key, ErrBadOwner},
		{"keyless, two nodes", func() []byte {
			return sealSet(t, devSet(t, a, 10, nil, entry(t, a, 5, 1), entry(t, b, 5, 1)), a.key)
		}, key, ErrBadOwner},
		{"expired", func() []byte {
			s := devSet(t, a, 10, nil, entry(t, a, 5, 1))
			s.Expires = t0
			return sealSet(t, s, a.key)
		}, key, ErrExpired},
		{"an entry outliving its set", func() []byte {
			s := devSet(t, a, 10, nil, entry(t, a, 5, 1))
			s.Expires = t0.Add(time.Minute)
			return sealSet(t, s, a.key)
		}, key, ErrAhead},
		{"expiring too far ahead", func() []byte {
			s := devSet(t, a, 10, nil, entry(t, a, 5, 1))
			s.Expires = t0.Add(MaxBindingLifetime + MaxClockSkew + time.Second)
			return sealSet(t, s, a.key)
		}, key, ErrAhead},
		{"sequence number ahead of the clock", func() []byte {
			return sealSet(t, devSet(t, a, SeqAt(t0.Add(MaxClockSkew+time.Second)), nil, entry(t, a, 5, 1)), a.key)
		}, key, ErrAhead},
		{"entry sequence number ahead of the clock", func() []byte {
			return sealSet(t, devSet(t, a, 10, nil, entry(t, a, SeqAt(t0.Add(time.Hour)), 1)), a.key)
		}, key, ErrAhead},
		{"too many serving nodes", func() []byte {
			var es []DeviceEntry
			for i := uint64(0); i <= MaxServingNodes; i++ {
				es = append(es, entry(t, newSigner(t), i, 1))
			}
			return sealSet(t, devSet(t, a, 10, uk, es...), a.key)
		}, key, ErrTooManyNodes},
		{"too many devices at one node", func() []byte {
			return sealSet(t, devSet(t, a, 10, uk, entry(t, a, 5, MaxDevicesPerNode+1)), a.key)
		}, key, ErrTooManyNodes},
		{"too many devices in all", func() []byte {
			var es []DeviceEntry
			for i := range 3 {
				es = append(es, entry(t, newSigner(t), uint64(i), MaxDevicesPerNode))
			}
			return sealSet(t, devSet(t, a, 10, uk, es...), a.key)
		}, key, ErrTooManyNodes},
		{"the same node twice", func() []byte {
			return sealSet(t, devSet(t, a, 10, uk, entry(t, a, 5, 1), entry(t, a, 6, 1)), a.key)
		}, key, ErrBadRecord},
		{"the same device twice", func() []byte {
			e := entry(t, a, 5, 2)
			e.Devices[1].Tag = e.Devices[0].Tag
			_ = e.SignEntry(alice, a.key)
			return sealSet(t, devSet(t, a, 10, uk, e), a.key)
		}, key, ErrBadRecord},
		{"a device tag too long", func() []byte {
			e := entry(t, a, 5, 1)
			e.Devices[0].Tag = strings.Repeat("x", MaxTagLength+1)
			_ = e.SignEntry(alice, a.key)
			return sealSet(t, devSet(t, a, 10, uk, e), a.key)
		}, key, ErrBadRecord},
		{"oversized", func() []byte { return make([]byte, MaxDeviceSetSize+1) }, key, ErrRecordTooBig},
		{"garbage", func() []byte { return []byte("not an envelope") }, key, ErrBadRecord},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var reasons []string
			v := v
			v.OnRefuse = func(r string) { reasons = append(reasons, r) }
			err := v.Validate(c.key, c.value())
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if len(reasons) != 1 || reasons[0] == "" || reasons[0] == ReasonOther {
				t.Errorf("refusal reasons %v", reasons)
			}
		})
	}
	if err := v.Validate(DeviceSetKey(mustAOR(t, "sip:alice@other")), sealSet(t, func() *DeviceSet {
		e := entry(t, a, 5, 1)
		_ = e.SignEntry(mustAOR(t, "sip:alice@other"), a.key)
		s := devSet(t, a, 10, nil, e)
		s.AOR = "sip:alice@other"
		return s
	}(), a.key)); !errors.Is(err, ErrNotInDomain) {
		t.Errorf("an AOR of another domain: %v", err)
	}
}

func mustAOR(t testing.TB, s string) AOR {
	t.Helper()
	a, err := ParseAOR(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestDeviceSetSupersedes: who may replace a stored set with what.
func TestDeviceSetSupersedes(t *testing.T) {
	a, b, rogue := newSigner(t), newSigner(t), newSigner(t)
	uk, _ := GenerateUserKey()
	otherKey, _ := GenerateUserKey()
	v := DeviceSetValidator{Domain: "pastry", Now: func() time.Time { return t0 }}
	key := DeviceSetKey(alice)
	stored := devSet(t, a, 10, uk, entry(t, a, 5, 1), entry(t, b, 7, 1))
	expiredB := entry(t, b, 7, 1)
	expiredB.Devices[0].Expires = t0
	_ = expiredB.SignEntry(alice, b.key)
	cases := []struct {
		name   string
		in     *DeviceSet
		stored *DeviceSet
		want   bool
	}{
		{"a refresh of a's entry that keeps b's", devSet(t, a, 11, uk, entry(t, a, 6, 1), entry(t, b, 7, 1)), stored, true},
		{"a newer entry of b written by a", devSet(t, a, 11, uk, entry(t, a, 5, 1), entry(t, b, 8, 1)), stored, true},
		{"a's stale view that drops b's live entry", devSet(t, a, 11, uk, entry(t, a, 6, 1)), stored, false},
		{"a's stale view with an older entry of b", devSet(t, a, 11, uk, entry(t, a, 6, 1), entry(t, b, 6, 1)), stored, false},
		{"b removing itself", devSet(t, b, 11, uk, entry(t, a, 5, 1)), stored, true},
		{"a removing itself", devSet(t, a, 11, uk, entry(t, b, 7, 1)), stored, true},
		{"a dropping b's lapsed entry", devSet(t, a, 11, uk, entry(t, a, 6, 1)), devSet(t, a, 10, uk, entry(t, a, 5, 1), expiredB), true},
		{"the same owner at a lower sequence number", devSet(t, a, 9, uk, entry(t, a, 6, 1), entry(t, b, 7, 1)), stored, false},
		{"the same sequence number", devSet(t, a, 10, uk, entry(t, a, 6, 1), entry(t, b, 7, 1)), stored, false},
		{"another user key over a live set", devSet(t, rogue, SeqAt(t0), otherKey, entry(t, rogue, 1, 1)), stored, false},
		{"a keyless node over a live set", devSet(t, rogue, SeqAt(t0), nil, entry(t, rogue, 1, 1)), stored, false},
		{"another owner over a tombstone", devSet(t, rogue, 1, nil, entry(t, rogue, 1, 1)), devSet(t, a, 10, uk), true},
		{"a tombstone of another owner over a live set", devSet(t, rogue, SeqAt(t0), nil), stored, false},
		{"the user's tombstone over its live set", devSet(t, a, 11, uk), devSet(t, a, 10, uk, entry(t, a, 5, 1)), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			signerOf := map[string]crypto.PrivKey{a.id.String(): a.key, b.id.String(): b.key, rogue.id.String(): rogue.key}
			in := sealSet(t, c.in, signerOf[c.in.Writer.String()])
			st := sealSet(t, c.stored, signerOf[c.stored.Writer.String()])
			i, err := v.Select(key, [][]byte{in, st})
			if err != nil {
				t.Fatal(err)
			}
			if got := i == 0; got != c.want {
				t.Errorf("incoming kept: %v, want %v", got, c.want)
			}
		})
	}
}

// TestDeviceSetEnrolled: in an enrolled domain the writer and every entry's
// node need a certificate for the AOR.
func TestDeviceSetEnrolled(t *testing.T) {
	auth, a, b, rogue := newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	e, err := NewEnrollment("pastry", auth.key.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	v := DeviceSetValidator{Domain: "pastry", Now: func() time.Time { return t0 }, Enrollment: e}
	key := DeviceSetKey(alice)
	certEntry := func(s signer, seq uint64) DeviceEntry {
		en := entry(t, s, seq, 1)
		en.Cert = issue(t, auth, "*@pastry", s, seq, t0.Add(-time.Hour), t0.Add(time.Hour))
		_ = en.SignEntry(alice, s.key)
		return en
	}
	s := devSet(t, a, 10, nil, certEntry(a, 1), certEntry(b, 2))
	s.Cert = issue(t, auth, "*@pastry", a, 1, t0.Add(-time.Hour), t0.Add(time.Hour))
	if err := v.Validate(key, sealSet(t, s, a.key)); err != nil {
		t.Fatalf("two certified nodes, no user key: %v", err)
	}
	bad := devSet(t, a, 11, nil, certEntry(a, 1), entry(t, rogue, 3, 1))
	bad.Cert = s.Cert
	if err := v.Validate(key, sealSet(t, bad, a.key)); !errors.Is(err, ErrNoCert) && !errors.Is(err, ErrBadCert) {
		t.Errorf("an uncertified entry: %v", err)
	}
	unc := devSet(t, rogue, 12, nil, certEntry(a, 1))
	if err := v.Validate(key, sealSet(t, unc, rogue.key)); err == nil {
		t.Error("an uncertified writer was accepted")
	}
}

func TestMergeDeviceSets(t *testing.T) {
	a, b, c, rogue := newSigner(t), newSigner(t), newSigner(t), newSigner(t)
	uk, _ := GenerateUserKey()
	v := DeviceSetValidator{Domain: "pastry", Now: func() time.Time { return t0 }}
	// a and b wrote at once: each set lacks the other's entry.
	sa := devSet(t, a, 11, uk, entry(t, a, 5, 1), entry(t, c, 3, 1))
	sb := devSet(t, b, 12, uk, entry(t, b, 6, 1), entry(t, c, 4, 2))
	sr := devSet(t, rogue, 13, nil, entry(t, rogue, 1, 1))
	m := v.MergeDeviceSets(sb, []*DeviceSet{sa, sr}, t0)
	if len(m.Entries) != 3 {
		t.Fatalf("merged entries: %d, want 3", len(m.Entries))
	}
	if e := m.Entry(c.id); e == nil || e.Seq != 4 || len(e.Devices) != 2 {
		t.Errorf("c's newest entry not kept: %+v", e)
	}
	if m.Entry(rogue.id) != nil {
		t.Error("another owner's entry merged")
	}
}

func TestNextDeviceSet(t *testing.T) {
	a, b := newSigner(t), newSigner(t)
	uk, _ := GenerateUserKey()
	now := t0
	cur := devSet(t, b, SeqAt(now.Add(time.Second)), uk, entry(t, b, 7, 1))
	mine := entry(t, a, 9, 2)
	next, err := NextDeviceSet(cur, alice, a.id, &mine, now)
	if err != nil {
		t.Fatal(err)
	}
	if next.Seq <= cur.Seq || len(next.Entries) != 2 || !next.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("next: seq %d (cur %d), %d entries, expires %v", next.Seq, cur.Seq, len(next.Entries), next.Expires)
	}
	gone, err := NextDeviceSet(devSet(t, a, 1, uk, entry(t, a, 9, 1)), alice, a.id, nil, now)
	if err != nil || len(gone.Entries) != 0 || gone.Expires.Before(now.Add(DeviceTombstone)) {
		t.Errorf("removal: %+v %v", gone, err)
	}
	if _, err := NextDeviceSet(nil, alice, b.id, &mine, now); !errors.Is(err, ErrWrongSigner) {
		t.Errorf("another node's entry: %v", err)
	}
	full := []DeviceEntry{}
	for range MaxServingNodes {
		full = append(full, entry(t, newSigner(t), 1, 1))
	}
	if _, err := NextDeviceSet(devSet(t, b, 1, uk, full...), alice, a.id, &mine, now); !errors.Is(err, ErrTooManyNodes) {
		t.Errorf("a ninth node: %v", err)
	}
}

// deviceOverlays starts n connected overlays of pastry whose validators
// know device sets, connected to extra hosts too.
func deviceOverlays(t *testing.T, n int, extra ...host.Host) ([]host.Host, []*Overlay) {
	t.Helper()
	return testOverlays(t, "pastry", n, extra,
		WithDHTOptions(dht.NamespacedValidator(NSDeviceSet, DeviceSetValidator{Domain: "pastry"})))
}

// TestPublishDevicesOverlay: alice's devices at two nodes holding her user
// key, published at the same moment, are both found by a third node; a
// node without her key cannot add itself, nor replace the set at any
// storer; a stale write (alice's key, a higher sequence number, without the
// other node's entry) is refused by every storer; a node that leaves
// removes only its own entry.
func TestPublishDevicesOverlay(t *testing.T) {
	attacker := testHost(t, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	rogueD, err := dht.New(attacker, dht.ProtocolPrefix(ProtocolPrefix("pastry")), dht.Mode(dht.ModeServer),
		dht.Datastore(dssync.MutexWrap(ds.NewMapDatastore())), dht.DisableProviders(),
		dht.Validator(record.NamespacedValidator{NSDeviceSet: acceptAll{attacker.ID()}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rogueD.Close() })
	hs, ovs := deviceOverlays(t, 5, attacker)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	uk, _ := GenerateUserKey()
	v := DeviceSetValidator{Domain: "pastry"}
	keys := make([]crypto.PrivKey, len(hs))
	for i, h := range hs {
		keys[i] = h.Peerstore().PrivKey(h.ID())
	}
	dev := func(instance string) []DeviceRef {
		now := time.Now()
		return []DeviceRef{{Tag: InstanceTag(alice, instance), Since: now, Expires: now.Add(time.Hour)}}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			_, errs[i] = PublishDevices(ctx, ovs[i].DHT(), v, DevicePublish{AOR: alice, NodeKey: keys[i], UserKey: uk,
				Addrs: hs[i].Addrs(), Devices: dev("<urn:uuid:device-" + string(rune('0'+i)) + ">")})
		})
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("publishing at two nodes: %v, %v", errs[0], errs[1])
	}
	got, err := LookupDeviceSet(ctx, ovs[2].DHT(), v, alice)
	if err != nil {
		t.Fatal(err)
	}
	if got.Entry(hs[0].ID()) == nil || got.Entry(hs[1].ID()) == nil {
		t.Fatalf("a third node sees %d entries, want both nodes'", len(got.Entries))
	}

	// A node without alice's key.
	if _, err := PublishDevices(ctx, ovs[3].DHT(), v, DevicePublish{AOR: alice, NodeKey: keys[3], Devices: dev("<urn:uuid:x>")}); !errors.Is(err, ErrOtherOwner) {
		t.Errorf("a node without the user key: %v", err)
	}
	// An outsider stores its keyless set at every storer.
	now := time.Now()
	ak := attacker.Peerstore().PrivKey(attacker.ID())
	rogue := &DeviceSet{AOR: alice.String(), Writer: attacker.ID(), Seq: SeqAt(now.Add(MaxClockSkew - time.Second)), Expires: now.Add(time.Hour)}
	re := DeviceEntry{Peer: attacker.ID(), Devices: dev("<urn:uuid:x>"), Expires: now.Add(time.Hour), Seq: 1}
	_ = re.SignEntry(alice, ak)
	rogue.Entries = []DeviceEntry{re}
	if err := rogueD.PutValue(ctx, DeviceSetKey(alice), sealSet(t, rogue, ak)); err != nil {
		t.Fatal(err)
	}
	// Node 0's stale write reaches every storer: alice's key, a higher seq,
	// without node 1's entry.
	stale := &DeviceSet{AOR: alice.String(), Writer: hs[0].ID(), Seq: SeqAt(now.Add(MaxClockSkew - time.Second)), Expires: now.Add(time.Hour)}
	se := DeviceEntry{Peer: hs[0].ID(), Devices: dev("<urn:uuid:device-0>"), Expires: now.Add(time.Hour), Seq: SeqAt(now)}
	_ = se.SignEntry(alice, keys[0])
	stale.Entries = []DeviceEntry{se}
	_ = stale.SignOwner(uk)
	if err := rogueD.PutValue(ctx, DeviceSetKey(alice), sealSet(t, stale, keys[0])); err != nil {
		t.Fatal(err)
	}
	for i, ov := range ovs {
		val, ok := ov.localValue(ctx, DeviceSetKey(alice))
		if !ok {
			t.Errorf("storer %d holds no set", i)
			continue
		}
		s, _ := OpenDeviceSet(val)
		if s.Entry(hs[0].ID()) == nil || s.Entry(hs[1].ID()) == nil || s.Entry(attacker.ID()) != nil {
			t.Errorf("storer %d after the attacks holds entries of %v", i, peersOf(s))
		}
	}
	for i := range ovs {
		got, err := LookupDeviceSet(ctx, ovs[i].DHT(), v, alice)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if got.Entry(hs[0].ID()) == nil || got.Entry(hs[1].ID()) == nil || got.Entry(attacker.ID()) != nil {
			t.Errorf("node %d after the attacks sees entries of %v", i, peersOf(got))
		}
	}

	// Node 0 leaves: node 1's devices stay.
	if _, err := PublishDevices(ctx, ovs[0].DHT(), v, DevicePublish{AOR: alice, NodeKey: keys[0], UserKey: uk}); err != nil {
		t.Fatal(err)
	}
	got, err = LookupDeviceSet(ctx, ovs[2].DHT(), v, alice)
	if err != nil {
		t.Fatal(err)
	}
	if got.Entry(hs[0].ID()) != nil || got.Entry(hs[1].ID()) == nil {
		t.Errorf("after node 0 left: entries of %v", peersOf(got))
	}
}

func peersOf(s *DeviceSet) []string {
	var out []string
	for _, e := range s.Entries {
		out = append(out, e.Peer.String()[:12])
	}
	return out
}

// TestPublishDevicesKeylessThenKey: a node's own keyless set gives way when
// the users file gains a key for the user.
func TestPublishDevicesKeylessThenKey(t *testing.T) {
	hs, ovs := deviceOverlays(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v := DeviceSetValidator{Domain: "pastry"}
	k := hs[0].Peerstore().PrivKey(hs[0].ID())
	now := time.Now()
	devs := []DeviceRef{{Tag: "t1", Since: now, Expires: now.Add(time.Hour)}}
	if _, err := PublishDevices(ctx, ovs[0].DHT(), v, DevicePublish{AOR: alice, NodeKey: k, Devices: devs}); err != nil {
		t.Fatal(err)
	}
	uk, _ := GenerateUserKey()
	got, err := PublishDevices(ctx, ovs[0].DHT(), v, DevicePublish{AOR: alice, NodeKey: k, UserKey: uk, Devices: devs})
	if err != nil {
		t.Fatal(err)
	}
	if got.Owner == nil || got.Entry(hs[0].ID()) == nil {
		t.Errorf("set after the key: owner %v, entries %v", got.Owner, peersOf(got))
	}
	// Another node without the key, keyless: refused.
	k1 := hs[1].Peerstore().PrivKey(hs[1].ID())
	if _, err := PublishDevices(ctx, ovs[1].DHT(), v, DevicePublish{AOR: alice, NodeKey: k1, Devices: devs}); !errors.Is(err, ErrOtherOwner) {
		t.Errorf("keyless node over the user's set: %v", err)
	}
}
