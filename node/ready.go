package node

import (
	"context"
	"sync"
	"time"

	"github.com/hiersip/hiersip/election"
)

// ReadyScope says which calls a node is ready to route (WaitReady).
type ReadyScope int

const (
	// ReadyDomain: calls between users of the node's domain. A node is ready
	// for its domain once it has joined the domain overlay, or once it has
	// tried every bootstrap source it was given (peers, web stations, its
	// peer cache) without finding a peer: a lone node serves its own users
	// at once, and finds the others when they come (mDNS, later rounds).
	ReadyDomain ReadyScope = iota
	// ReadyGlobal: calls to other domains too. ReadyDomain, and a way out of
	// the domain is known: the node is a serving proxy with a peer in the
	// global overlay, or it knows a proxy of its domain.
	ReadyGlobal
)

func (s ReadyScope) String() string {
	if s == ReadyGlobal {
		return "global"
	}
	return "domain"
}

// readyPoll is how often the readiness watcher looks at the node.
const readyPoll = 20 * time.Millisecond

// readiness holds the channels closed when the node becomes ready.
type readiness struct {
	domain, global         chan struct{}
	domainOnce, globalOnce sync.Once
}

func newReadiness() readiness {
	return readiness{domain: make(chan struct{}), global: make(chan struct{})}
}

// Ready is closed once the node is ready to route calls between users of
// its domain (ReadyDomain); ReadyFor(ReadyGlobal) for calls to other
// domains. A node that was ready stays so for these channels, even if its
// peers or proxies go away later.
func (n *Node) Ready() <-chan struct{} { return n.ready.domain }

// ReadyFor is Ready for the given scope.
func (n *Node) ReadyFor(scope ReadyScope) <-chan struct{} {
	if scope == ReadyGlobal {
		return n.ready.global
	}
	return n.ready.domain
}

// WaitReady waits until the node is ready for scope, ctx ends (its error)
// or the node is closed (ErrClosed). An application waits on it before its
// first call: a call routed before gets 503 or 404.
func (n *Node) WaitReady(ctx context.Context, scope ReadyScope) error {
	select {
	case <-n.ReadyFor(scope):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.ctx.Done():
		return ErrClosed
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// watchReady closes the readiness channels as the node gets there.
func (n *Node) watchReady() {
	defer n.wg.Done()
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	lookups := lookupBackoff{every: time.Second}
	for {
		if !isClosed(n.ready.domain) && (n.domain.Joined() || isClosed(n.boot.Tried())) {
			n.ready.domainOnce.Do(func() { close(n.ready.domain) })
			n.log.Info("ready for calls in the domain", "joined", n.domain.Joined())
		}
		if isClosed(n.ready.domain) && n.routeOutKnown(&lookups) {
			n.ready.globalOnce.Do(func() { close(n.ready.global) })
			n.log.Info("ready for calls to other domains", "proxy", n.IsProxy())
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lookupBackoff spaces the proxy-record lookups of a node without an
// election: one second at first, doubling up to maxReadyLookupEvery, so that
// a domain that never elects a proxy (election disabled everywhere) does not
// cost every node a DHT lookup a second forever.
type lookupBackoff struct {
	next  time.Time
	every time.Duration
}

const maxReadyLookupEvery = 30 * time.Second

// routeOutKnown reports whether the node can route a call out of its
// domain: as a serving proxy in the global overlay, or through a known proxy
// of its domain. Without an election it looks the domain's proxy record up,
// with backoff (lookupBackoff).
func (n *Node) routeOutKnown(lb *lookupBackoff) bool {
	if r := n.election; r != nil {
		st := r.State()
		if st.Role == election.RoleProxy {
			g := n.global.overlay()
			return st.Serving && g != nil && g.RoutingTableSize() > 0
		}
		for _, m := range st.Proxies {
			if m.ID != n.ID() {
				return true
			}
		}
		return false
	}
	now := n.cfg.Clock.Now()
	if now.Before(lb.next) {
		return false
	}
	lb.next = now.Add(lb.every)
	lb.every = min(2*lb.every, maxReadyLookupEvery)
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	defer cancel()
	ps, err := n.router.ownProxies(ctx)
	return err == nil && len(ps) > 0
}
