package node

import (
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/peer"
)

// LookupEvent is one resolution a node made to route a call (draft Figure
// 3): its domain's proxies (F1/F2), another domain's proxies in the global
// overlay (F5/F6) or a user's binding in the domain overlay (F9/F10). Tools
// draw them beside the SIP messages of sipbridge.WithTrace.
type LookupEvent struct {
	At      time.Time     // when the lookup started
	Took    time.Duration // until its answer
	Node    peer.ID       // the node that looked up
	Overlay string        // "domain" or "global"
	Record  string        // "proxy" or "binding"
	Key     string        // what was looked up: sip:overlay@<domain>, or the AOR
	// Source is "overlay" for a DHT lookup, "cache" for the node's cache of
	// another domain's proxies, "election" for its own domain's proxies as
	// the election announced them (no lookup needed).
	Source string
	Found  []peer.ID // the proxies, or the node serving the AOR
	Err    error
}

// Lookup sources.
const (
	SourceOverlay  = "overlay"
	SourceCache    = "cache"
	SourceElection = "election"
)

// traceLookup reports a lookup to Config.LookupTrace.
func (n *Node) traceLookup(start time.Time, overlay, record, key, source string, found []peer.ID, err error) {
	if n.cfg.LookupTrace == nil {
		return
	}
	n.cfg.LookupTrace(LookupEvent{At: start, Took: time.Since(start), Node: n.ID(), Overlay: overlay,
		Record: record, Key: key, Source: source, Found: found, Err: err})
}

func proxyIDs(ps []peer.AddrInfo) []peer.ID {
	out := make([]peer.ID, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func recordProxies(rec *domains.ProxyRecord) []peer.ID {
	if rec == nil {
		return nil
	}
	return proxyIDs(rec.Proxies)
}

func overlayURI(domain string) string { return "sip:overlay@" + domain }
