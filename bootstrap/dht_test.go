package bootstrap

import (
	"testing"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

func bsTestDHT(t *testing.T, h host.Host, domain string) *dht.IpfsDHT {
	t.Helper()
	d, err := dht.New(h,
		dht.ProtocolPrefix(protocol.ID("/hiersip/"+domain)),
		dht.Mode(dht.ModeServer),
		dht.Datastore(dssync.MutexWrap(ds.NewMapDatastore())),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// TestBootstrapWithDHT: "joined" as the lead wires it, from a domain DHT's
// routing table, which fills only after identify; the cache gets the
// routing table's peers.
func TestBootstrapWithDHT(t *testing.T) {
	seed, h := bsTestHost(t), bsTestHost(t)
	bsTestDHT(t, seed, "pastry")
	d := bsTestDHT(t, h, "pastry")

	cfg := bsConfig(t)
	cfg = append(cfg, WithStatic(bsP2PAddrs(t, seed)...))
	cacheFile := t.TempDir() + "/peers-pastry.json"
	cfg = append(cfg, WithCacheFile(cacheFile))
	cfg = append(cfg, WithJoined(func() bool { return d.RoutingTable().Size() > 0 }))
	cfg = append(cfg, WithPeers(func() []peer.AddrInfo {
		var out []peer.AddrInfo
		for _, p := range d.RoutingTable().ListPeers() {
			out = append(out, h.Peerstore().PeerInfo(p))
		}
		return out
	}))
	b := bsStart(t, h, cfg)
	bsWaitJoined(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	c := NewPeerCache(cacheFile, "pastry", h.ID())
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	if got := c.AddrInfos(); len(got) != 1 || got[0].ID != seed.ID() {
		t.Errorf("cache holds %v, want the seed", got)
	}
}
