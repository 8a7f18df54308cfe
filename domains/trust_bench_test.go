package domains

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// BenchmarkBindingValidate: the CPU cost of validating one binding, as every
// storer and every lookup does: keyless (one signature) and owned by a user
// key (two).
func BenchmarkBindingValidate(b *testing.B) {
	node := newSigner(b)
	uk, _ := GenerateUserKey()
	v := BindingValidator{Domain: "pastry", Now: func() time.Time { return t0 }}
	bob, _ := ParseAOR("sip:bob@bupt.pastry")
	key := BindingKey(bob)
	keyless := seal(b, binding(node, bob.String(), 1), node.key)
	ob := binding(node, bob.String(), 1)
	if err := ob.SignOwner(uk); err != nil {
		b.Fatal(err)
	}
	owned := seal(b, ob, node.key)
	for _, c := range []struct {
		name string
		val  []byte
	}{{"keyless", keyless}, {"owned", owned}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := v.Validate(key, c.val); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkProxySelect: the CPU cost of a storer's decision between its
// proxy record and an incoming one: the same proxy's refresh, and a
// successor endorsed by a majority of three electors (two signatures to
// verify).
func BenchmarkProxySelect(b *testing.B) {
	p, c1, c2 := newSigner(b), newSigner(b), newSigner(b)
	mk := func(s signer, epoch uint64, issued time.Time, endorsers ...signer) []byte {
		r := &ProxyRecord{Domain: "pastry", Signer: s.id, Epoch: epoch, Electors: []peer.ID{p.id, c1.id, c2.id},
			Proxies: []peer.AddrInfo{{ID: s.id}}, Issued: issued, Expires: t0.Add(time.Minute)}
		for _, e := range endorsers {
			en, _ := Endorse(e.key, "pastry", epoch, s.id)
			r.Endorsements = append(r.Endorsements, en)
		}
		v, err := r.Seal(s.key)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	stored := mk(p, 3, t0.Add(-time.Second))
	v := ProxyValidator{Global: true, Now: func() time.Time { return t0 }}
	key := ProxyKey("pastry", true)
	for _, c := range []struct {
		name string
		in   []byte
	}{{"refresh", mk(p, 3, t0)}, {"endorsed-successor", mk(c1, 4, t0, c2)}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if i, err := v.Select(key, [][]byte{c.in, stored}); err != nil || i != 0 {
					b.Fatal(i, err)
				}
			}
		})
	}
}

// BenchmarkEnumeration: how fast one peer ID can test guessed names against
// a domain of three nodes, each answering with the default lookup bound
// (and without it, as before issue 15). It reports names per second.
func BenchmarkEnumeration(b *testing.B) {
	for _, limited := range []bool{false, true} {
		b.Run(fmt.Sprintf("bound=%v", limited), func(b *testing.B) {
			opts := []OverlayOption{WithQuorum(1)}
			if !limited {
				opts = append(opts, WithLookupLimit(0, 0))
			}
			_, ovs := benchOverlays(b, 4, opts...)
			ctx := context.Background()
			const names = 200
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				for j := range names {
					a, _ := ParseAOR(fmt.Sprintf("sip:guess%d-%d@pastry", i, j))
					_, _ = ovs[3].GetBinding(ctx, a) // the enumerator is the fourth node
				}
			}
			b.ReportMetric(float64(names*b.N)/time.Since(start).Seconds(), "names/s")
		})
	}
}

// benchOverlays starts n connected domain overlays of "pastry" on loopback.
func benchOverlays(b *testing.B, n int, opts ...OverlayOption) ([]host.Host, []*Overlay) {
	b.Helper()
	var hs []host.Host
	var ovs []*Overlay
	for range n {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = h.Close() })
		ov, err := NewDomainOverlay(h, "pastry", opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ov.Close() })
		hs, ovs = append(hs, h), append(ovs, ov)
	}
	for i, a := range hs {
		for _, c := range hs[i+1:] {
			if err := a.Connect(context.Background(), peer.AddrInfo{ID: c.ID(), Addrs: c.Addrs()}); err != nil {
				b.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for slices.ContainsFunc(ovs, func(o *Overlay) bool { return o.RoutingTableSize() < n-1 }) {
		if time.Now().After(deadline) {
			b.Fatal("routing tables")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return hs, ovs
}
