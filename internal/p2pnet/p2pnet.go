package p2pnet

import (
	"slices"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// RelayedAddr reports whether a is a relayed (/p2p-circuit) address.
func RelayedAddr(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// Relayed reports whether c goes through a relay: a limited connection, or
// one whose remote address is a circuit address.
func Relayed(c network.Conn) bool {
	return c.Stat().Limited || RelayedAddr(c.RemoteMultiaddr())
}

// MergeAddrInfos appends infos to dst, merging entries of the same peer: the
// first entry of a peer keeps its place and gains the addresses of later
// ones it lacks. Entries without a peer ID are dropped. The result shares no
// address slice with its inputs.
func MergeAddrInfos(dst []peer.AddrInfo, infos ...peer.AddrInfo) []peer.AddrInfo {
	for _, ai := range infos {
		if ai.ID == "" {
			continue
		}
		i := slices.IndexFunc(dst, func(d peer.AddrInfo) bool { return d.ID == ai.ID })
		if i < 0 {
			dst = append(dst, peer.AddrInfo{ID: ai.ID, Addrs: slices.Clone(ai.Addrs)})
			continue
		}
		for _, a := range ai.Addrs {
			if !slices.ContainsFunc(dst[i].Addrs, a.Equal) {
				dst[i].Addrs = append(dst[i].Addrs, a)
			}
		}
	}
	return dst
}
