package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hiersip/hiersip/election"
)

// startElectingDomains starts the named domains, n nodes each, with the
// election on; the first node of each domain is a global seed.
func startElectingDomains(t testing.TB, n int, names ...string) map[string][]*Node {
	t.Helper()
	ctx := context.Background()
	out := map[string][]*Node{}
	start := func(cfg Config) *Node {
		nd, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		out[cfg.Domain] = append(out[cfg.Domain], nd)
		return nd
	}
	// Each domain's first node is a global seed, started first, so that every node
	// knows every seed (as operators list several): a new proxy can join the global
	// overlay whichever seed has died.
	var seeds []string
	for _, d := range names {
		first := start(Config{Domain: d, ListenAddrs: loopback, Logger: quiet, GlobalSeed: true,
			Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
			Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: slices.Clone(seeds)}})
		seeds = append(seeds, p2pAddr(t, first.Host()))
	}
	for _, d := range names {
		for range n - 1 {
			start(Config{Domain: d, ListenAddrs: loopback, Logger: quiet,
				Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: []string{p2pAddr(t, out[d][0].Host())}},
				Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: slices.Clone(seeds)}})
		}
	}
	return out
}

// serving returns the node of nodes that serves as proxy, once exactly one
// does and every node agrees on it and sees want candidates (any number
// when want is negative).
func serving(nodes []*Node, want int) (*Node, error) {
	var proxy *Node
	for _, nd := range nodes {
		if nd.closed() {
			continue
		}
		st := nd.Election().State()
		if st.Role == election.RoleProxy && st.Serving {
			if proxy != nil {
				return nil, errors.New("two proxies")
			}
			proxy = nd
		}
	}
	if proxy == nil {
		return nil, errors.New("no proxy serving")
	}
	for _, nd := range nodes {
		if nd.closed() {
			continue
		}
		st := nd.Election().State()
		if st.Leader != proxy.ID() {
			return nil, fmt.Errorf("%s follows %s, not %s", nd.ID().ShortString(), st.Leader.ShortString(), proxy.ID().ShortString())
		}
		if want >= 0 && len(st.Candidates) != want {
			return nil, fmt.Errorf("%s sees %d candidates, want %d", nd.ID().ShortString(), len(st.Candidates), want)
		}
	}
	return proxy, nil
}

func TestElectionPublishesProxiesAndFailsOver(t *testing.T) {
	ds := startElectingDomains(t, 5, "pastry", "can")
	ctx := context.Background()
	var pastryProxy, canProxy *Node
	eventually(t, 30*time.Second, "pastry elects one proxy and two candidates", func() (err error) {
		pastryProxy, err = serving(ds["pastry"], 2)
		return err
	})
	eventually(t, 30*time.Second, "can elects one proxy and two candidates", func() (err error) {
		canProxy, err = serving(ds["can"], 2)
		return err
	})
	resolves := func(from *Node, domain string, want *Node) func() error {
		return func() error {
			r, err := from.router.domainProxies(ctx, domain)
			if err != nil {
				return err
			}
			if r.Proxies[0].ID != want.ID() {
				return fmt.Errorf("%s resolves to %s, want %s", domain, r.Proxies[0].ID.ShortString(), want.ID().ShortString())
			}
			return nil
		}
	}
	eventually(t, 30*time.Second, "can's proxy resolves pastry's Overlay-Resource-ID", resolves(canProxy, "pastry", pastryProxy))
	eventually(t, 30*time.Second, "pastry's proxy resolves can's Overlay-Resource-ID", resolves(pastryProxy, "can", canProxy))

	// Kill pastry's proxy: its host goes away without a handoff.
	killed := time.Now()
	old := pastryProxy
	old.h.Close()
	old.Close()
	var next *Node
	eventually(t, 30*time.Second, "pastry elects a new proxy", func() (err error) {
		next, err = serving(ds["pastry"], 2)
		if err == nil && next == old {
			return errors.New("old proxy still serving")
		}
		return err
	})
	eventually(t, 30*time.Second, "the new proxy resolves in the global overlay", resolves(canProxy, "pastry", next))
	t.Logf("failover: proxy killed → new proxy resolvable from can in %v", time.Since(killed).Round(time.Millisecond))
}

// BenchmarkFailover measures, per run, the time from killing a domain's
// proxy (its host closed, no handoff) to the new proxy's record resolving
// in the global overlay from another domain's proxy.
func BenchmarkFailover(b *testing.B) {
	var ds []time.Duration
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		doms := startElectingDomains(b, 3, "pastry", "can")
		var old, can *Node
		eventually(b, 30*time.Second, "proxies", func() (err error) {
			if old, err = serving(doms["pastry"], 2); err != nil {
				return err
			}
			can, err = serving(doms["can"], 2)
			return err
		})
		eventually(b, 30*time.Second, "pastry resolves", func() error {
			_, err := can.router.domainProxies(ctx, "pastry")
			return err
		})
		b.StartTimer()
		killed := time.Now()
		old.h.Close()
		old.Close()
		eventually(b, 30*time.Second, "failover", func() error {
			r, err := can.router.domainProxies(ctx, "pastry")
			if err != nil {
				return err
			}
			if r.Proxies[0].ID == old.ID() {
				return errors.New("old proxy")
			}
			return nil
		})
		ds = append(ds, time.Since(killed))
		b.StopTimer()
		for _, nodes := range doms {
			for _, n := range nodes {
				n.Close()
			}
		}
	}
	reportLatency(b, ds)
}
