package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
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
	Record  string        // "proxy", "binding" or "devices" (the AOR's device set, issue 19)
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

// Overlay labels of the metrics and lookup events.
const (
	overlayDomain = "domain"
	overlayGlobal = "global"
)

// lookups bounds, counts (Metrics) and traces (Config.LookupTrace) the
// lookups the node's roles make. Latencies are measured on the system clock.
type lookups struct {
	node    peer.ID
	timeout time.Duration // of a lookup whose context has no deadline
	metrics *Metrics
	trace   func(LookupEvent) // nil: none
}

// lookup runs get on overlay as one lookup of record under key, bounded by
// the lookup timeout, counted and traced with the peers found names.
func lookup[T any](l *lookups, ctx context.Context, overlay, record, key string,
	get func(context.Context) (T, error), found func(T, error) []peer.ID) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	start := time.Now()
	v, err := get(ctx)
	l.metrics.observeLookup(overlay, record, time.Since(start), err)
	if l.trace != nil {
		l.traced(start, overlay, record, key, SourceOverlay, found(v, err), err)
	}
	return v, err
}

// traced reports a resolution that started at start to Config.LookupTrace.
func (l *lookups) traced(start time.Time, overlay, record, key, source string, found []peer.ID, err error) {
	if l.trace == nil {
		return
	}
	l.trace(LookupEvent{At: start, Took: time.Since(start), Node: l.node, Overlay: overlay,
		Record: record, Key: key, Source: source, Found: found, Err: err})
}

func proxyIDs(ps []peer.AddrInfo) []peer.ID {
	out := make([]peer.ID, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func recordProxies(rec *domains.ProxyRecord, _ error) []peer.ID {
	if rec == nil {
		return nil
	}
	return proxyIDs(rec.Proxies)
}
