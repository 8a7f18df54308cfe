package domains

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	swarm "github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// acceptAll is the validator of an attacker's own kad-dht: it stores
// anything and prefers its own forgeries (values whose signer is the
// attacker's host).
type acceptAll struct{ self peer.ID }

func (acceptAll) Validate(string, []byte) error { return nil }

func (a acceptAll) Select(_ string, vs [][]byte) (int, error) {
	for i, v := range vs {
		if b, err := OpenBinding(v); err == nil && b.Peer == a.self {
			return i, nil
		}
		if r, err := OpenProxyRecord(v); err == nil && r.Signer == a.self {
			return i, nil
		}
	}
	return 0, nil
}

// rogueDHT is an outside peer's kad-dht speaking the overlay's protocol with
// its own code: it keeps whatever it is given.
func rogueDHT(t *testing.T, h host.Host, name string) *dht.IpfsDHT {
	t.Helper()
	d, err := dht.New(h, dht.ProtocolPrefix(ProtocolPrefix(name)), dht.Mode(dht.ModeServer),
		dht.Datastore(dssync.MutexWrap(ds.NewMapDatastore())), dht.DisableProviders(),
		dht.Validator(record.NamespacedValidator{NSBinding: acceptAll{h.ID()}, NSLocalProxy: acceptAll{h.ID()}, NSOverlay: acceptAll{h.ID()}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// refusals counts an overlay's refusals by record and reason.
type refusals struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusals) hook(record, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[record+"/"+reason]++
}

func (r *refusals) get(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[k]
}

// testOverlays starts n hosts on loopback with overlays of name (opts
// apply to all), all connected to each other and to extra hosts, and waits
// until every routing table holds every other overlay.
func testOverlays(t *testing.T, name string, n int, extra []host.Host, opts ...OverlayOption) ([]host.Host, []*Overlay) {
	t.Helper()
	var hs []host.Host
	var ovs []*Overlay
	for range n {
		h := testHost(t, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		var ov *Overlay
		var err error
		if name == GlobalName {
			ov, err = NewGlobalOverlay(h, opts...)
		} else {
			ov, err = NewDomainOverlay(h, name, opts...)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ov.Close() })
		hs, ovs = append(hs, h), append(ovs, ov)
	}
	all := append(append([]host.Host(nil), hs...), extra...)
	for i, a := range all {
		for _, b := range all[i+1:] {
			connect(t, a, b)
		}
	}
	waitFor(t, 20*time.Second, "routing tables", func() bool {
		for _, ov := range ovs {
			if ov.RoutingTableSize() < len(all)-1 {
				return false
			}
		}
		return true
	})
	return hs, ovs
}

// connect connects a to b. The DHTs dial each other as soon as they learn
// of a peer; a dial that crossed the other side's left a backoff, which is
// cleared before trying again.
func connect(t *testing.T, a, b host.Host) {
	t.Helper()
	var err error
	for range 5 {
		if a.Network().Connectedness(b.ID()) == network.Connected {
			return
		}
		if err = a.Connect(context.Background(), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err == nil {
			return
		}
		if sw, ok := a.Network().(*swarm.Swarm); ok {
			sw.Backoff().Clear(b.ID())
		}
	}
	t.Fatal(err)
}

// TestAttackNameHijackOpenDomain is the attack of issue 15 on a live name:
// an outside peer stores a binding of bob's AOR with Created=2001 (the old
// rule preferred the earliest Created), the highest sequence number its
// clock allows and the longest lifetime, in its own store and at every
// storer. Every storer keeps bob's binding, and every lookup, the
// attacker's own answer included, resolves bob to his node.
func TestAttackNameHijackOpenDomain(t *testing.T) {
	attacker := testHost(t, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	rogue := rogueDHT(t, attacker, "pastry")
	var ref refusals
	hs, ovs := testOverlays(t, "pastry", 6, []host.Host{attacker}, WithRefusalHook(ref.hook))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)
	now := time.Now()
	genuine := &Binding{AOR: bob.String(), Peer: hs[0].ID(), Addrs: hs[0].Addrs(),
		Contacts: []Contact{{Expires: now.Add(time.Hour)}}, Created: now, Expires: now.Add(time.Hour), Seq: SeqAt(now)}
	if err := ovs[0].PutBinding(ctx, hs[0].Peerstore().PrivKey(hs[0].ID()), genuine); err != nil {
		t.Fatal(err)
	}
	forged := &Binding{AOR: bob.String(), Peer: attacker.ID(), Addrs: attacker.Addrs(),
		Contacts: []Contact{{URI: "sip:eve@127.0.0.1:5099", Expires: now.Add(MaxBindingLifetime)}},
		Created:  time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), Expires: now.Add(MaxBindingLifetime), Seq: SeqAt(now.Add(MaxClockSkew / 2))}
	val, err := forged.Seal(attacker.Peerstore().PrivKey(attacker.ID()))
	if err != nil {
		t.Fatal(err)
	}
	if err := rogue.PutValue(ctx, key, val); err != nil {
		t.Fatalf("attacker's store: %v", err)
	}
	storers := 0
	for i, ov := range ovs {
		b, err := ov.StoredBinding(ctx, bob)
		if err != nil {
			continue // not a storer of this key
		}
		storers++
		if b.Peer != hs[0].ID() {
			t.Errorf("storer %d replaced bob's binding with the attacker's", i)
		}
	}
	if storers < len(ovs)/2 {
		t.Errorf("only %d storers hold bob's binding", storers)
	}
	for i, ov := range ovs[1:] {
		got, err := ov.GetBinding(ctx, bob)
		if err != nil || got.Peer != hs[0].ID() {
			t.Errorf("lookup from node %d: %v, %v; want bob's node", i+1, got, err)
		}
	}
	if ref.get("binding/"+ReasonOtherOwner) == 0 {
		t.Error("no refusal of the attacker's binding was counted")
	}
}

// TestLookupSettlesConflicts: a lookup that meets an attacker's answer
// first does not take it: it asks the key's closest storers and takes the
// claim most of them hold.
func TestLookupSettlesConflicts(t *testing.T) {
	// Three attackers answer with the forged binding; the honest storers
	// hold bob's. Repeat lookups so that arrival orders vary.
	var attackers []host.Host
	var rogues []*dht.IpfsDHT
	for range 3 {
		h := testHost(t, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		attackers, rogues = append(attackers, h), append(rogues, rogueDHT(t, h, "pastry"))
	}
	var ref refusals
	hs, ovs := testOverlays(t, "pastry", 7, attackers, WithQuorum(2), WithRefusalHook(ref.hook))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)
	now := time.Now()
	genuine := &Binding{AOR: bob.String(), Peer: hs[0].ID(), Addrs: hs[0].Addrs(), Created: now, Expires: now.Add(time.Hour), Seq: SeqAt(now)}
	if err := ovs[0].PutBinding(ctx, hs[0].Peerstore().PrivKey(hs[0].ID()), genuine); err != nil {
		t.Fatal(err)
	}
	for i, r := range rogues {
		a := attackers[i]
		forged := &Binding{AOR: bob.String(), Peer: a.ID(), Addrs: a.Addrs(),
			Created: now.Add(-23 * time.Hour), Expires: now.Add(time.Hour), Seq: SeqAt(now)}
		val, err := forged.Seal(a.Peerstore().PrivKey(a.ID()))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.PutValue(ctx, key, val); err != nil { // each keeps its own
			t.Fatal(err)
		}
	}
	for round := range 5 {
		for i, ov := range ovs[1:] {
			got, err := ov.GetBinding(ctx, bob)
			if err != nil || got.Peer != hs[0].ID() {
				t.Fatalf("round %d, lookup from node %d: %v, %v; want bob's node", round, i+1, got, err)
			}
		}
	}
	var settled int64
	for _, ov := range ovs {
		settled += ov.nSettled.Load()
	}
	if settled == 0 {
		t.Error("no lookup met the attackers' answers: the test did not exercise the conflict")
	}
	t.Logf("%d of %d lookups met a conflict and settled it", settled, 5*(len(ovs)-1))
}

// TestDecideMajority: the decision of a settled lookup.
func TestDecideMajority(t *testing.T) {
	owner, a, b := newSigner(t), newSigner(t), newSigner(t)
	v := BindingValidator{Domain: "pastry", Now: func() time.Time { return t0 }}
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)
	v1 := seal(t, binding(owner, bob.String(), 1), owner.key)
	v2 := seal(t, binding(owner, bob.String(), 2), owner.key)
	x := seal(t, binding(a, bob.String(), 9), a.key)
	y := seal(t, binding(b, bob.String(), 9), b.key)
	for _, c := range []struct {
		name  string
		votes map[string]int
		local []byte
		want  []byte
		err   error
	}{
		{"newer record counts the older one's holders", map[string]int{string(v1): 2, string(v2): 1, string(x): 2}, nil, v2, nil},
		{"majority", map[string]int{string(v2): 3, string(x): 2, string(y): 2}, nil, v2, nil},
		{"tie keeps the local copy", map[string]int{string(v2): 2, string(x): 2}, v2, v2, nil},
		{"tie without a local copy", map[string]int{string(v2): 2, string(x): 2}, nil, nil, ErrConflict},
		{"garbage only", map[string]int{"junk": 5}, nil, nil, ErrNotFound},
	} {
		got, err := decide(v, key, c.votes, c.local)
		if !errors.Is(err, c.err) || string(got) != string(c.want) {
			t.Errorf("%s: got %d bytes, %v", c.name, len(got), err)
		}
	}
}

// TestLookupLimit: an overlay answers a peer's GET_VALUE requests at the
// configured rate; a dictionary attack from one peer ID slows to it.
func TestLookupLimit(t *testing.T) {
	var ref refusals
	hs, ovs := testOverlays(t, "pastry", 2, nil, WithLookupLimit(20, 5), WithRefusalHook(ref.hook), WithQuorum(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = hs
	const guesses = 45
	start := time.Now()
	for i := range guesses {
		a, _ := ParseAOR(fmt.Sprintf("sip:user%d@pastry", i))
		_, _ = ovs[1].GetBinding(ctx, a) // not found: the name does not exist
	}
	el := time.Since(start)
	// 45 requests at 20/s after a burst of 5: at least (45-5)/20 = 2 s.
	if el < 1800*time.Millisecond {
		t.Fatalf("%d guesses in %v: not rate-bound", guesses, el)
	}
	if ref.get("lookup/throttled") == 0 {
		t.Error("throttled lookups not counted")
	}
	t.Logf("%d guesses from one peer: %v", guesses, el.Round(time.Millisecond))
}

// TestAttackProxyRecordHijack is the attack of issue 15 on another domain:
// an outsider joins the global overlay and stores domain beta's proxy
// record, signed by itself, with a higher epoch (the old rule: the highest
// epoch of any signer wins). Every storer keeps beta's record and every
// lookup resolves beta to its proxy. A successor endorsed by beta's electors
// does replace it.
func TestAttackProxyRecordHijack(t *testing.T) {
	attacker := testHost(t, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	rogue := rogueDHT(t, attacker, GlobalName)
	var ref refusals
	hs, ovs := testOverlays(t, GlobalName, 5, []host.Host{attacker}, WithRefusalHook(ref.hook))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := func(h host.Host) crypto.PrivKey { return h.Peerstore().PrivKey(h.ID()) }
	now := time.Now()
	rec := func(h host.Host, epoch uint64, electors []peer.ID, endorsers ...host.Host) *ProxyRecord {
		r := &ProxyRecord{Domain: "beta", Signer: h.ID(), Epoch: epoch, Electors: electors, Issued: now, Expires: now.Add(time.Minute),
			Proxies: []peer.AddrInfo{{ID: h.ID(), Addrs: h.Addrs()}}}
		for _, e := range endorsers {
			en, err := Endorse(key(e), "beta", epoch, h.ID())
			if err != nil {
				t.Fatal(err)
			}
			r.Endorsements = append(r.Endorsements, en)
		}
		return r
	}
	proxy, cand := hs[0], hs[1]
	electors := []peer.ID{proxy.ID(), cand.ID()}
	if err := ovs[0].PutProxyRecord(ctx, key(proxy), rec(proxy, 3, electors)); err != nil {
		t.Fatal(err)
	}
	forged, err := rec(attacker, 1000, []peer.ID{attacker.ID()}).Seal(key(attacker))
	if err != nil {
		t.Fatal(err)
	}
	if err := rogue.PutValue(ctx, ProxyKey("beta", true), forged); err != nil {
		t.Fatal(err)
	}
	resolves := func(want peer.ID) {
		t.Helper()
		for i, ov := range ovs {
			if r, err := ov.StoredProxyRecord(ctx, "beta"); err == nil && r.Signer != want {
				t.Errorf("storer %d holds %s's record", i, r.Signer.ShortString())
			}
			r, err := ov.GetProxyRecord(ctx, "beta")
			if err != nil || r.Signer != want {
				t.Errorf("lookup from node %d: %v, %v; want %s", i, r, err, want.ShortString())
			}
		}
	}
	resolves(proxy.ID())
	if ref.get("proxy/"+ReasonNoEvidence) == 0 {
		t.Error("no refusal of the forged record was counted")
	}
	// Failover: the candidate, endorsed by the old proxy (2 of 2), takes over.
	if err := ovs[1].PutProxyRecord(ctx, key(cand), rec(cand, 4, []peer.ID{cand.ID()}, proxy)); err != nil {
		t.Fatal(err)
	}
	resolves(cand.ID())
}
