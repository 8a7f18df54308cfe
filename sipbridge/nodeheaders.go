package sipbridge

import (
	"strings"
	"sync"
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
		for hasHeader(m, headerNodeAddrs) {
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

// learnNodes adds the addresses in m's Hiersip-Node headers to the peerstore. A value
// seen in the last minute is not parsed again (every response of a record-routing node
// carries the same one).
func (b *Bridge) learnNodes(m sip.Message) {
	i := 0
	for _, h := range headersOf(m) {
		if !strings.EqualFold(h.Name(), headerNodeAddrs) {
			continue
		}
		if i++; i > 4 {
			return
		}
		v := h.Value()
		if b.nodesSeen.seen(v, time.Now()) {
			continue
		}
		f := strings.Fields(v)
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

// hasHeader reports whether m has a header named name (any case).
func hasHeader(m sip.Message, name string) bool {
	for _, h := range headersOf(m) {
		if strings.EqualFold(h.Name(), name) {
			return true
		}
	}
	return false
}

// recentValues remembers values for a while (bounded: it starts over when full).
type recentValues struct {
	mu sync.Mutex
	m  map[string]time.Time
}

const (
	recentFor = time.Minute
	recentMax = 4096
)

// seen reports whether v was noted in the last recentFor, and notes it.
func (r *recentValues) seen(v string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if at, ok := r.m[v]; ok && now.Sub(at) < recentFor {
		return true
	}
	if r.m == nil || len(r.m) >= recentMax {
		r.m = map[string]time.Time{}
	}
	r.m[v] = now
	return false
}
