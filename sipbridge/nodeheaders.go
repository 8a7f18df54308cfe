package sipbridge

import (
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// headerNodeAddrs carries a record-routing node's peer ID and addresses between nodes
// ("Hiersip-Node: <peer-id> <multiaddr> ..."), so that the other end of the dialog can open a
// stream to it for in-dialog requests without a lookup, even across domains. It never
// reaches a UA.
const headerNodeAddrs = "Hiersip-Node"

const maxNodeAddrs = 8

// nodeHeaders strips Hiersip-Node headers from m and, when add, appends this node's.
// Requests and responses going into the overlay keep (and, with add, extend) them.
func (b *Bridge) nodeHeaders(m sip.Message, add, intoOverlay bool) {
	if !intoOverlay {
		for i := len(m.GetHeaders(headerNodeAddrs)); i > 0; i-- {
			removeFirst(m, headerNodeAddrs)
		}
		return
	}
	if !add {
		return
	}
	m.AppendHeader(sip.NewHeader(headerNodeAddrs, b.nodeHeaderValue()))
}

// nodeHeaderValue is this node's Hiersip-Node value, recomputed every few seconds (the host's
// addresses change rarely, and computing them is not free).
func (b *Bridge) nodeHeaderValue() string {
	b.nodeHdrMu.Lock()
	defer b.nodeHdrMu.Unlock()
	if now := time.Now(); now.After(b.nodeHdrAt) {
		parts := []string{b.selfStr}
		for _, a := range b.h.Addrs() {
			if len(parts) > maxNodeAddrs {
				break
			}
			parts = append(parts, a.String())
		}
		b.nodeHdr, b.nodeHdrAt = strings.Join(parts, " "), now.Add(5*time.Second)
	}
	return b.nodeHdr
}

// learnNodes adds the addresses in m's Hiersip-Node headers to the peerstore.
func (b *Bridge) learnNodes(m sip.Message) {
	for i, h := range m.GetHeaders(headerNodeAddrs) {
		if i >= 4 {
			return
		}
		f := strings.Fields(h.Value())
		if len(f) < 2 {
			continue
		}
		p, err := peer.Decode(f[0])
		if err != nil || p == b.self {
			continue
		}
		var addrs []ma.Multiaddr
		for _, s := range f[1:min(len(f), maxNodeAddrs+1)] {
			if a, err := ma.NewMultiaddr(s); err == nil {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) > 0 {
			b.h.Peerstore().AddAddrs(p, addrs, time.Hour)
		}
	}
}
