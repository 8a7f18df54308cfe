package node

import (
	"context"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestNATConfigErrors(t *testing.T) {
	const id = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
	for _, c := range []struct {
		nat   NATConfig
		field string
	}{
		{NATConfig{Relays: []string{"not a multiaddr"}}, "nat.relays[0]"},
		{NATConfig{Relays: []string{"/ip4/1.2.0.1/tcp/4001/p2p/" + id, "/ip4/1.2.0.1/tcp/4001"}}, "nat.relays[1]"},
		{NATConfig{ForceReachability: "sometimes"}, "nat.reachability"},
		{NATConfig{RelayDuration: -1}, "nat.relay_duration"},
		{NATConfig{RelayData: -1}, "nat.relay_data"},
	} {
		_, err := New(context.Background(), Config{Domain: "pastry", ListenAddrs: loopback, Logger: quiet, NAT: c.nat})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%+v: got %v, want a ConfigError for %s", c.nat, err, c.field)
		}
	}
}

func TestNATReachability(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		own  bool
		want string
	}{
		{Config{}, true, ""},
		{Config{NAT: NATConfig{Public: true}}, true, "public"},
		{Config{NAT: NATConfig{Public: true, ForceReachability: "private"}}, true, "private"},
		{Config{NAT: NATConfig{ForceReachability: "private"}}, true, "private"},
		{Config{NAT: NATConfig{ForceReachability: "private"}, Election: ElectionConfig{Reachability: "public"}}, true, "public"},
		{Config{NAT: NATConfig{ForceReachability: "private"}}, false, ""},
	} {
		if got := c.cfg.electionReachability(c.own); got != c.want {
			t.Errorf("%+v own=%v: election reachability %q, want %q", c.cfg.NAT, c.own, got, c.want)
		}
	}
}

// TestNATNodes: a public node (relay service) and a private one (AutoRelay,
// hole punching) start and talk on loopback; the private node offers the
// configured relay to AutoRelay, and only peers with public addresses from
// its other sources.
func TestNATNodes(t *testing.T) {
	ctx := context.Background()
	pub, err := New(ctx, Config{Domain: "pastry", ListenAddrs: loopback, Logger: quiet, GlobalSeed: true,
		NAT:       NATConfig{Public: true},
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
		Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	relay := p2pAddr(t, pub.Host())
	priv, err := New(ctx, Config{Domain: "pastry", ListenAddrs: loopback, Logger: quiet,
		NAT:       NATConfig{Relays: []string{relay}, ForceReachability: "private", PortMap: true},
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: []string{relay}},
		Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: []string{relay}}})
	if err != nil {
		t.Fatal(err)
	}
	defer priv.Close()
	<-priv.Joined()
	if p := priv.pathTo(pub.ID()); p.Direct == 0 || p.String() != "direct" {
		t.Errorf("path to the public node: %v, want direct", p)
	}
	if p := priv.pathTo("nobody"); p.String() != "none" {
		t.Errorf("path to an unknown peer: %v", p)
	}
	_, src, err := priv.cfg.hostOptions()
	if err != nil {
		t.Fatal(err)
	}
	src.node.Store(priv)
	cands := src.candidates(10)
	// The configured relay is offered even on loopback; the same node as
	// global seed adds nothing; nothing else is public here.
	if len(cands) != 1 || cands[0].ID != pub.ID() {
		t.Errorf("relay candidates %v, want only %s", cands, pub.ID())
	}
	if got := src.candidates(0); len(got) != 0 {
		t.Errorf("candidates(0) = %v", got)
	}
}

func TestRelayedAddrs(t *testing.T) {
	direct := ma.StringCast("/ip4/1.2.0.1/tcp/4001")
	relayed := ma.StringCast("/ip4/1.2.0.1/tcp/4001/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq/p2p-circuit")
	if !isPublicDirect(direct) || isPublicDirect(relayed) || isPublicDirect(ma.StringCast("/ip4/10.0.0.1/tcp/1")) {
		t.Error("isPublicDirect is wrong")
	}
	if n := relayAddrCount([]ma.Multiaddr{direct, relayed, relayed}); n != 2 {
		t.Errorf("relayAddrCount = %d", n)
	}
}

// TestRelayRouting: a peer of unknown address is offered circuit addresses
// through the configured relays and the relays of the node's reservations,
// never through itself.
func TestRelayRouting(t *testing.T) {
	const relayID = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
	relay, err := peer.Decode(relayID)
	if err != nil {
		t.Fatal(err)
	}
	static, err := NATConfig{Relays: []string{"/ip4/1.2.0.1/tcp/4001/p2p/" + relayID, "/ip4/1.2.0.1/udp/4001/quic-v1/p2p/" + relayID}}.validate()
	if err != nil {
		t.Fatal(err)
	}
	src := &relaySource{static: static}
	r := relayRouting{src}
	target := peer.ID("target")
	ai, err := r.FindPeer(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/ip4/1.2.0.1/tcp/4001/p2p/" + relayID + "/p2p-circuit",
		"/ip4/1.2.0.1/udp/4001/quic-v1/p2p/" + relayID + "/p2p-circuit",
	}
	if len(ai.Addrs) != len(want) {
		t.Fatalf("FindPeer: %v, want %v", ai.Addrs, want)
	}
	for i, a := range ai.Addrs {
		if a.String() != want[i] {
			t.Errorf("FindPeer address %d: %s, want %s", i, a, want[i])
		}
	}
	if _, err := r.FindPeer(context.Background(), relay); err == nil {
		t.Error("FindPeer offered the relay a circuit through itself")
	}
}
