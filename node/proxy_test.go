package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// startDomains starts a domain per name, n nodes each. The first node of
// each domain is a global seed, and every node knows the earlier seeds as
// global-overlay bootstrap peers.
func startDomains(t *testing.T, n int, names ...string) map[string][]*Node {
	t.Helper()
	ctx := context.Background()
	firsts := map[string]*Node{}
	var global []string
	for _, d := range names {
		nd, err := New(ctx, Config{Domain: d, ListenAddrs: loopback, Logger: quiet, GlobalSeed: true, Election: ElectionConfig{Disable: true},
			Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: global},
			Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		firsts[d] = nd
		global = append(global, p2pAddr(t, nd.Host()))
	}
	out := map[string][]*Node{}
	for _, d := range names {
		out[d] = []*Node{firsts[d]}
		for range n - 1 {
			nd, err := New(ctx, Config{Domain: d, ListenAddrs: loopback, Logger: quiet, Election: ElectionConfig{Disable: true},
				Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: []string{p2pAddr(t, firsts[d].Host())}},
				Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: global}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nd.Close() })
			out[d] = append(out[d], nd)
		}
		for _, nd := range out[d] {
			waitJoined(t, nd)
		}
	}
	return out
}

func TestProxyRecordsAcrossDomains(t *testing.T) {
	ds := startDomains(t, 3, "pastry", "can")
	ctx := context.Background()
	// The first nodes have no global bootstrap peers of their own; the
	// others know the first nodes. Make a non-first node proxy in each.
	// become fails while the global overlay it joins has no peer in its table yet ("failed
	// to find any peer in table"); the election retries its duties each second, and so
	// does the test.
	p1, p2 := ds["pastry"][1], ds["can"][2]
	for _, p := range []*Node{p1, p2} {
		eventually(t, 20*time.Second, p.Domain()+"'s proxy publishes its records", func() error {
			return p.duties.become(ctx, 1, []peer.ID{p.ID()}, nil)
		})
	}
	eventually(t, 20*time.Second, "pastry's proxy resolves can's Overlay-Resource-ID", func() error {
		r, err := p1.router.domainProxies(ctx, "can")
		if err != nil {
			// The record may have been stored before the global overlays met.
			_ = p2.duties.become(ctx, 1, []peer.ID{p2.ID()}, nil)
			return err
		}
		if r.Proxies[0].ID != p2.ID() {
			return errors.New("wrong proxy " + r.Proxies[0].ID.String())
		}
		return nil
	})
	// Members find their local proxy in the domain overlay (draft F1/F2).
	r, err := ds["can"][0].router.localProxies(ctx)
	if err != nil || r.Proxies[0].ID != p2.ID() {
		t.Fatalf("local proxy of can: %+v %v", r, err)
	}
	// Non-proxies are not in the global overlay.
	if _, err := ds["can"][1].router.domainProxies(ctx, "pastry"); !errors.Is(err, ErrNotProxy) {
		t.Fatalf("DomainProxies on a non-proxy: %v", err)
	}
	// A new proxy with a higher epoch but without the endorsement of the old
	// record's electors does not supersede it (the chain of custody).
	if err := p2.duties.stepDown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p2.global.overlay() != nil || p2.IsProxy() {
		t.Fatal("stepped-down proxy still in the global overlay")
	}
	p3 := ds["can"][1]
	_ = p3.duties.become(ctx, 2, []peer.ID{p3.ID()}, nil) // refused by the storers that hold p2's record
	if r, err := p1.router.domainProxies(ctx, "can"); err != nil || r.Signer != p2.ID() {
		t.Fatalf("an unendorsed proxy record replaced the old one: %+v %v", r, err)
	}
	// Endorsed by the old proxy (a handoff), it does.
	en, err := p2.duties.endorse(2, p3.ID())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the endorsed proxy publishes its records", func() error {
		return p3.duties.become(ctx, 2, []peer.ID{p3.ID()}, nil, en)
	})
	p1.router.forget("can") // the resolver's cache: the test wants the overlay's answer
	eventually(t, 20*time.Second, "the new proxy of can resolves", func() error {
		r, err := p1.router.domainProxies(ctx, "can")
		if err != nil {
			return err
		}
		if r.Proxies[0].ID != p3.ID() || r.Epoch != 2 {
			return errors.New("still the old proxy")
		}
		return nil
	})
	if _, err := p1.router.domainProxies(ctx, "chord"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown domain: %v, want not found", err)
	}
}
