package p2pnet

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

var (
	direct  = ma.StringCast("/ip4/1.2.0.1/tcp/4001")
	relayed = ma.StringCast("/ip4/1.2.0.1/tcp/4001/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq/p2p-circuit")
)

// conn is a connection with a remote address and a limited flag, nothing more.
type conn struct {
	network.Conn
	addr    ma.Multiaddr
	limited bool
}

func (c conn) RemoteMultiaddr() ma.Multiaddr { return c.addr }
func (c conn) Stat() network.ConnStats {
	return network.ConnStats{Stats: network.Stats{Limited: c.limited}}
}

func TestRelayed(t *testing.T) {
	if RelayedAddr(direct) || !RelayedAddr(relayed) {
		t.Error("RelayedAddr confuses direct and relayed addresses")
	}
	for _, tc := range []struct {
		c    conn
		want bool
	}{
		{conn{addr: direct}, false},
		{conn{addr: relayed}, true},
		{conn{addr: direct, limited: true}, true}, // a limited connection is the relay's, whatever its address
	} {
		if got := Relayed(tc.c); got != tc.want {
			t.Errorf("Relayed(%s, limited %v) = %v", tc.c.addr, tc.c.limited, got)
		}
	}
}

func TestMergeAddrInfos(t *testing.T) {
	in := []peer.AddrInfo{
		{ID: "a", Addrs: []ma.Multiaddr{direct}},
		{ID: "b", Addrs: []ma.Multiaddr{relayed}},
		{ID: "a", Addrs: []ma.Multiaddr{direct, relayed}},
		{Addrs: []ma.Multiaddr{direct}}, // no peer: dropped
	}
	got := MergeAddrInfos(nil, in...)
	if len(got) != 2 || got[0].ID != "a" || len(got[0].Addrs) != 2 || got[1].ID != "b" || len(got[1].Addrs) != 1 {
		t.Fatalf("MergeAddrInfos: %v", got)
	}
	got[0].Addrs[0] = relayed
	if !in[0].Addrs[0].Equal(direct) {
		t.Error("MergeAddrInfos shares an address slice with its input")
	}
	if got := MergeAddrInfos(got, peer.AddrInfo{ID: "b", Addrs: []ma.Multiaddr{relayed}}); len(got) != 2 || len(got[1].Addrs) != 1 {
		t.Errorf("merging a known address: %v", got)
	}
}
