package domains

import (
	"context"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// TestOverlayOverRelayedConnection: a member reachable only through a
// relay (behind a NAT, hole punching failed) must not stall the overlay.
// The NAT test bed saw it: the caller's node reached the lone node c1 only
// through the relay, kad-dht waited for a direct connection that never
// came (its routing-table check of c1 holding the message sender to c1
// meanwhile), and every REGISTER on that node timed out after 10 s.
//
// Here a and c have no listen address: each reaches b directly, and they
// reach each other only through the relay r. a's store of a binding finds
// c among the closest peers (b tells it) and must store it there over the
// relayed connection, and c's lookup of a's binding must use the relayed
// connection too.
func TestOverlayOverRelayedConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := testHost(t, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if _, err := relay.New(r); err != nil {
		t.Fatal(err)
	}
	rInfo := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	b := testHost(t, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	bInfo := peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}
	// c announces its relay address, as a NATed node with a reservation
	// does (AutoRelay); a has no address at all.
	circuit := ma.StringCast(r.Addrs()[0].String() + "/p2p/" + r.ID().String() + "/p2p-circuit")
	a := testHost(t, libp2p.NoListenAddrs, libp2p.EnableRelay())
	c := testHost(t, libp2p.NoListenAddrs, libp2p.EnableRelay(),
		libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return []ma.Multiaddr{circuit} }))

	ovs := map[host.Host]*Overlay{}
	stores := map[host.Host]ds.Batching{}
	for _, h := range []host.Host{a, b, c} {
		stores[h] = dssync.MutexWrap(ds.NewMapDatastore())
		ov, err := NewDomainOverlay(h, "pastry", WithDatastore(stores[h]))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ov.Close() })
		ovs[h] = ov
	}
	// c's relay address only: a cannot dial c any other way.
	if err := c.Connect(ctx, rInfo); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Reserve(ctx, c, rInfo); err != nil {
		t.Fatal(err)
	}
	for _, h := range []host.Host{a, c} {
		if err := h.Connect(ctx, bInfo); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Connect(ctx, rInfo); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(network.WithAllowLimitedConn(ctx, "test"), peer.AddrInfo{ID: c.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
		t.Fatal(err)
	}
	for _, conn := range a.Network().ConnsToPeer(c.ID()) {
		if !conn.Stat().Limited {
			t.Fatalf("a–c connection %s is not a limited (relayed) one", conn.RemoteMultiaddr())
		}
	}
	// b knows both a and c, so it names c to a's queries and a to c's.
	waitFor(t, 10*time.Second, "b's routing table holds a and c", func() bool {
		rt := ovs[b].DHT().RoutingTable()
		return rt.Find(a.ID()) != "" && rt.Find(c.ID()) != ""
	})

	aor, err := ParseAOR("sip:alice@pastry")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	bind := &Binding{AOR: aor.String(), Peer: a.ID(), Contacts: []Contact{{URI: "sip:alice@127.0.0.1:5070"}},
		Created: now, Expires: now.Add(time.Hour), Seq: 1}
	// Each operation has 10 s; kad-dht alone would wait for a direct
	// connection to the peer behind the relay until then.
	opCtx, opCancel := context.WithTimeout(ctx, 10*time.Second)
	err = ovs[a].PutBinding(opCtx, a.Peerstore().PrivKey(a.ID()), bind)
	stalled := opCtx.Err()
	opCancel()
	if err != nil || stalled != nil {
		t.Fatalf("store with a member reachable only through a relay: %v (deadline: %v)", err, stalled)
	}
	// a stored the record at c too, over the relayed connection.
	res, err := stores[c].Query(ctx, dsq.Query{KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := res.Rest()
	if len(keys) != 1 {
		t.Fatalf("c holds %d records, want a's binding (not stored over the relay)", len(keys))
	}
	// c's lookup asks a, through the relay, and must not wait on it.
	opCtx, opCancel = context.WithTimeout(ctx, 10*time.Second)
	got, err := ovs[c].GetBinding(opCtx, aor)
	stalled = opCtx.Err()
	opCancel()
	if err != nil || got.Peer != a.ID() || stalled != nil {
		t.Fatalf("lookup from c: %+v, %v (deadline: %v)", got, err, stalled)
	}
}
