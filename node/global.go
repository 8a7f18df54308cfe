package node

import (
	"context"
	"errors"
	"sync"

	"github.com/hiersip/hiersip/bootstrap"
	"github.com/hiersip/hiersip/domains"
)

// globalMembership is the node's membership of the global overlay of
// proxies (a second kad-dht on its host, DESIGN §4): joined while the node
// is a proxy or a global seed. Joining creates the overlay and starts its
// bootstrapper (disk, mDNS) and leaving closes them (the peer cache is
// saved): that I/O runs under no lock. One join or leave runs at a time
// (busy), since an overlay that is closing and one that is opening would
// share the host's protocol handlers; readers (overlay) never wait for it.
type globalMembership struct {
	// open creates the global overlay and starts its bootstrapper, for
	// the node's life.
	open func() (*globalMember, error)

	mu     sync.Mutex
	cur    *globalMember
	busy   chan struct{} // closed when the join or leave under way ends
	closed bool
}

// globalMember is the global overlay and its bootstrapper.
type globalMember struct {
	ov   *domains.Overlay
	boot *bootstrap.Bootstrapper
}

func (g *globalMember) close() error { return errors.Join(g.boot.Close(), g.ov.Close()) }

// overlay returns the global overlay, or nil when the node is not in it.
func (g *globalMembership) overlay() *domains.Overlay {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cur == nil {
		return nil
	}
	return g.cur.ov
}

// begin waits until no join or leave is under way and marks one begun; it
// returns the current member, or an error when the membership is closed or
// ctx ends first. end must follow.
func (g *globalMembership) begin(ctx context.Context) (*globalMember, error) {
	for {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			return nil, ErrClosed
		}
		if g.busy == nil {
			g.busy = make(chan struct{})
			cur := g.cur
			g.mu.Unlock()
			return cur, nil
		}
		wait := g.busy
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// end ends what begin began, leaving cur as the member.
func (g *globalMembership) end(cur *globalMember) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cur = cur
	close(g.busy)
	g.busy = nil
}

// join joins the global overlay, or returns it while joined.
func (g *globalMembership) join(ctx context.Context) (*domains.Overlay, error) {
	cur, err := g.begin(ctx)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		cur, err = g.open()
	}
	g.end(cur)
	if err != nil {
		return nil, err
	}
	return cur.ov, nil
}

// leave leaves the global overlay, if the node is in it. Readers stop
// seeing the overlay at once; it is closed before another join can begin.
func (g *globalMembership) leave(ctx context.Context) error {
	cur, err := g.begin(ctx)
	if err != nil {
		return err
	}
	return g.drop(cur, false)
}

// close leaves the global overlay for good: later joins fail with ErrClosed.
// It waits for a join or leave under way.
func (g *globalMembership) close() error {
	cur, err := g.begin(context.Background())
	if err != nil {
		return nil // closed before
	}
	return g.drop(cur, true)
}

// drop closes cur within a begin, and ends it without a member.
func (g *globalMembership) drop(cur *globalMember, final bool) error {
	g.mu.Lock()
	g.cur = nil
	g.closed = g.closed || final
	g.mu.Unlock()
	var err error
	if cur != nil {
		err = cur.close()
	}
	g.end(nil)
	return err
}
