package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// loopback is the listen address of test nodes.
var loopback = []string{"/ip4/127.0.0.1/tcp/0"}

// quiet discards the logs of test nodes.
var quiet = slog.New(slog.DiscardHandler)

// p2pAddr returns h's first address with its /p2p/ component.
func p2pAddr(t testing.TB, h host.Host) string {
	t.Helper()
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil || len(addrs) == 0 {
		t.Fatalf("addresses of %s: %v", h.ID(), err)
	}
	return addrs[0].String()
}

// startDomain starts n nodes of domain on loopback; every node after the
// first bootstraps from the first. It waits until all have joined.
func startDomain(t testing.TB, domain string, n int) []*Node {
	t.Helper()
	ctx := context.Background()
	cfg := Config{Domain: domain, ListenAddrs: loopback, Logger: quiet, Election: ElectionConfig{Disable: true},
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true}}
	first, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	nodes := []*Node{first}
	cfg.Bootstrap.Peers = []string{p2pAddr(t, first.Host())}
	for range n - 1 {
		nd, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		waitJoined(t, nd)
	}
	return nodes
}

func waitJoined(t testing.TB, n *Node) {
	t.Helper()
	select {
	case <-n.Joined():
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s did not join %s", n.ID(), n.Domain())
	}
}

func mustAOR(t testing.TB, s string) domains.AOR {
	t.Helper()
	a, err := domains.ParseAOR(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func contact(uri string, d time.Duration) []domains.Contact {
	return []domains.Contact{{URI: uri, Expires: time.Now().Add(d)}}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTwentyNodesRegisterAndResolve(t *testing.T) {
	const n = 20
	nodes := startDomain(t, "pastry", n)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i, nd := range nodes {
		aor := mustAOR(t, fmt.Sprintf("sip:user%d@bupt.pastry", i))
		if err := nd.Register(ctx, aor, contact(fmt.Sprintf("sip:user%d@127.0.0.1:%d", i, 6000+i), time.Hour)); err != nil {
			t.Fatalf("node %d register: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n*n)
	for _, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range n {
				aor := mustAOR(t, fmt.Sprintf("sip:user%d@bupt.pastry", j))
				b, err := nd.Lookup(ctx, aor)
				if err != nil {
					errs <- fmt.Errorf("%s looking up %s: %w", nd.ID().ShortString(), aor, err)
					continue
				}
				// The phone's contact stays at its node: the overlay says
				// only which node serves the AOR (README, "What the overlays reveal").
				if b.Peer != nodes[j].ID() || len(b.Contacts) != 1 || b.Contacts[0].URI != "" {
					errs <- fmt.Errorf("%s: wrong binding %+v", aor, b)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestUnregisterTombstone(t *testing.T) {
	nodes := startDomain(t, "pastry", 3)
	ctx := context.Background()
	bob := mustAOR(t, "sip:bob@bupt.pastry")
	if err := nodes[0].Register(ctx, bob, contact("sip:bob@127.0.0.1:5062", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[2].Lookup(ctx, bob); err != nil {
		t.Fatalf("lookup before unregister: %v", err)
	}
	if err := nodes[0].Unregister(ctx, bob); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		if _, err := nd.Lookup(ctx, bob); !errors.Is(err, ErrNotFound) {
			t.Fatalf("lookup after unregister from %s: %v, want not found", nd.ID().ShortString(), err)
		}
	}
	// Registering again wins over the tombstone.
	if err := nodes[0].Register(ctx, bob, contact("sip:bob@127.0.0.1:5064", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b, err := nodes[1].Lookup(ctx, bob); err != nil || b.Peer != nodes[0].ID() || len(b.Contacts) != 1 {
		t.Fatalf("lookup after re-register: %+v %v", b, err)
	}
	if rs := nodes[0].locator.registrations(); len(rs) != 1 || rs[0].Contacts[0].URI != "sip:bob@127.0.0.1:5064" {
		t.Fatalf("the serving node's registration: %+v", rs)
	}
}

func TestLookupMissingIsQuick(t *testing.T) {
	nodes := startDomain(t, "pastry", 5)
	start := time.Now()
	_, err := nodes[3].Lookup(context.Background(), mustAOR(t, "sip:nobody@bupt.pastry"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup of a missing AOR: %v, want not found", err)
	}
	// Not a timing assertion: a not-found that only came from the timeout
	// would carry context.DeadlineExceeded.
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("not-found came from the timeout after %v", time.Since(start))
	}
}

func TestForeignDomainAOR(t *testing.T) {
	nodes := startDomain(t, "pastry", 2)
	alice := mustAOR(t, "sip:alice@pku.can")
	if err := nodes[0].Register(context.Background(), alice, contact("sip:alice@127.0.0.1:1", time.Hour)); !errors.Is(err, ErrNotInDomain) {
		t.Fatalf("register foreign AOR: %v", err)
	}
	if _, err := nodes[0].Lookup(context.Background(), alice); !errors.Is(err, ErrNotInDomain) {
		t.Fatalf("lookup foreign AOR: %v", err)
	}
}

// TestForgedRecordsRejected stores forged, tampered, expired and misplaced
// records straight into the DHT from a rogue member and checks each is
// refused and the genuine binding still resolves.
func TestForgedRecordsRejected(t *testing.T) {
	nodes := startDomain(t, "pastry", 4)
	ctx := context.Background()
	owner, rogue, reader := nodes[0], nodes[1], nodes[3]
	bob := mustAOR(t, "sip:bob@bupt.pastry")
	if err := owner.Register(ctx, bob, contact("sip:bob@127.0.0.1:5062", time.Hour)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	genuine := domains.Binding{AOR: bob.String(), Peer: owner.ID(), Addrs: owner.Host().Addrs(),
		Contacts: contact("sip:eve@127.0.0.1:6666", time.Hour), Created: now.Add(-time.Hour), Expires: now.Add(time.Hour), Seq: ^uint64(0)}
	key := domains.BindingKey(bob)
	d := rogue.domain.DHT()

	// Forged: claims to be the owner's record, signed by the rogue.
	forged := genuine
	if v, err := forged.Seal(rogue.key); err == nil {
		if err := d.PutValue(ctx, key, v); err == nil {
			t.Error("forged record (other signer) accepted")
		}
	}
	// The rogue's own record for bob, registered later: loses to the first.
	squat := genuine
	squat.Peer, squat.Created = rogue.ID(), now
	if v, err := squat.Seal(rogue.key); err == nil {
		_ = d.PutValue(ctx, key, v) // refused by peers holding the genuine record
	}
	// Tampered: a valid envelope with one byte flipped.
	tam := genuine
	tam.Peer = rogue.ID()
	v, _ := tam.Seal(rogue.key)
	v[len(v)-10] ^= 0xff
	if err := d.PutValue(ctx, key, v); err == nil {
		t.Error("tampered record accepted")
	}
	// Expired.
	exp := squat
	exp.Expires = now.Add(-time.Minute)
	v, _ = exp.Seal(rogue.key)
	if err := d.PutValue(ctx, key, v); err == nil {
		t.Error("expired record accepted")
	}
	// Wrong key: a valid record of eve stored under bob's key.
	eve := squat
	eve.AOR = "sip:eve@bupt.pastry"
	v, _ = eve.Seal(rogue.key)
	if err := d.PutValue(ctx, key, v); err == nil {
		t.Error("record under the wrong key accepted")
	}
	b, err := reader.Lookup(ctx, bob)
	if err != nil {
		t.Fatalf("genuine binding after attacks: %v", err)
	}
	if b.Peer != owner.ID() || b.Contacts[0].URI != "" {
		t.Fatalf("binding after attacks: peer %s contact %q, want the owner's", b.Peer, b.Contacts[0].URI)
	}
}

// TestTwoDomainsShareHosts runs two domain overlays and the global overlay
// on the same hosts and checks that records never cross domains.
func TestTwoDomainsShareHosts(t *testing.T) {
	ctx := context.Background()
	var hosts []host.Host
	for range 3 {
		h, err := libp2p.New(libp2p.ListenAddrStrings(loopback...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		hosts = append(hosts, h)
	}
	start := func(domain string) []*Node {
		var out []*Node
		for i, h := range hosts {
			cfg := Config{Domain: domain, Logger: quiet, Election: ElectionConfig{Disable: true},
				Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true}}
			if i > 0 {
				cfg.Bootstrap.Peers = []string{p2pAddr(t, hosts[0])}
			}
			n, err := NewWithHost(ctx, h, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { n.Close() })
			out = append(out, n)
		}
		for _, n := range out {
			waitJoined(t, n)
		}
		return out
	}
	pastry, can := start("pastry"), start("can")

	if err := pastry[0].Register(ctx, mustAOR(t, "sip:bob@bupt.pastry"), contact("sip:bob@127.0.0.1:1", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := can[1].Register(ctx, mustAOR(t, "sip:alice@pku.can"), contact("sip:alice@127.0.0.1:2", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := pastry[2].Lookup(ctx, mustAOR(t, "sip:bob@bupt.pastry")); err != nil {
		t.Fatalf("bob in pastry: %v", err)
	}
	// The same key looked up in the other domain's DHT finds nothing, and
	// its validator refuses a pastry record.
	bobKey := domains.BindingKey(mustAOR(t, "sip:bob@bupt.pastry"))
	if _, err := can[2].domain.DHT().GetValue(ctx, bobKey); err == nil {
		t.Fatal("pastry's record visible in can's DHT")
	}
	if _, err := pastry[0].domain.DHT().GetValue(ctx, domains.BindingKey(mustAOR(t, "sip:alice@pku.can"))); err == nil {
		t.Fatal("can's record visible in pastry's DHT")
	}

	// The global overlay on the same hosts serves proxy records.
	var globals []*domains.Overlay
	for i, n := range pastry {
		g, err := n.global.join(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			eventually(t, 10*time.Second, "global overlay routing table", func() error {
				if g.RoutingTableSize() == 0 {
					return errors.New("empty")
				}
				return nil
			})
		}
		globals = append(globals, g)
	}
	rec := &domains.ProxyRecord{Domain: "pastry", Signer: pastry[0].ID(), Epoch: 1,
		Proxies: []peer.AddrInfo{pastry[0].Host().Peerstore().PeerInfo(pastry[0].ID())},
		Issued:  time.Now(), Expires: time.Now().Add(time.Minute)}
	if err := globals[0].PutProxyRecord(ctx, pastry[0].key, rec); err != nil {
		t.Fatal(err)
	}
	got, err := globals[2].GetProxyRecord(ctx, "pastry")
	if err != nil || got.Signer != pastry[0].ID() {
		t.Fatalf("proxy record from the global overlay: %+v %v", got, err)
	}
	// And the domain overlays on those hosts still serve their users.
	if _, err := can[0].Lookup(ctx, mustAOR(t, "sip:alice@pku.can")); err != nil {
		t.Fatalf("alice in can beside the global overlay: %v", err)
	}
	if _, err := pastry[0].domain.DHT().GetValue(ctx, domains.ProxyKey("pastry", true)); err == nil {
		t.Fatal("global overlay's record visible in the domain overlay")
	}
}

func TestCloseIsIdempotentAndLeavesHost(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings(loopback...))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	n, err := NewWithHost(context.Background(), h, Config{Domain: "pastry", Logger: quiet,
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := n.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
	for _, p := range h.Mux().Protocols() {
		if p == "/hiersip/pastry/kad/1.0.0" {
			t.Fatal("domain protocol still handled after Close")
		}
	}
	if len(h.Addrs()) == 0 {
		t.Fatal("application's host was closed")
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cases := []struct {
		cfg   Config
		field string
	}{
		{Config{}, "domain"},
		{Config{Domain: "Bad Name"}, "domain"},
		{Config{Domain: "global"}, "domain"},
		{Config{Domain: "pastry", KnownDomains: []string{"ok", "no_way"}}, "known_domains[1]"},
		{Config{Domain: "pastry", ListenAddrs: []string{"127.0.0.1:4001"}}, "listen_addrs[0]"},
		{Config{Domain: "pastry", Bootstrap: BootstrapConfig{Peers: []string{"/ip4/127.0.0.1/tcp/1"}}}, "bootstrap.peers[0]"},
		{Config{Domain: "pastry", RepublishInterval: time.Millisecond}, "republish_interval"},
	}
	for _, c := range cases {
		_, err := New(context.Background(), c.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("New(%+v) = %v, want a ConfigError naming %s", c.cfg, err, c.field)
		}
	}
}
