package node

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/hiersip/hiersip/bootstrap"
	"github.com/hiersip/hiersip/domains"
)

// TestGlobalMembershipNoLockDuringIO: joining the global overlay (an
// overlay to create, a bootstrapper to start: disk and mDNS) holds no lock
// that readers need; a second join waits for the first and shares its
// overlay; a leave waits for the join under way, and a closed membership
// refuses joins.
func TestGlobalMembershipNoLockDuringIO(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings(loopback...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	release := make(chan struct{})
	var opens atomic.Int32
	g := &globalMembership{open: func() (*globalMember, error) {
		opens.Add(1)
		<-release // as slow as the disk and mDNS care to be
		ov, err := domains.NewGlobalOverlay(h)
		if err != nil {
			return nil, err
		}
		boot, err := bootstrap.New(h, domains.GlobalName)
		if err != nil {
			return nil, errors.Join(err, ov.Close())
		}
		return &globalMember{ov: ov, boot: boot}, nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	joined := make(chan *domains.Overlay, 2)
	for range 2 {
		go func() {
			ov, err := g.join(ctx)
			if err != nil {
				t.Error(err)
			}
			joined <- ov
		}()
	}
	eventually(t, 10*time.Second, "a join under way", func() error {
		if opens.Load() == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	// While the join is under way, readers get their answer at once.
	read := make(chan *domains.Overlay)
	go func() { read <- g.overlay() }()
	select {
	case ov := <-read:
		if ov != nil {
			t.Fatal("an overlay before the join ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading the membership waits for the join's I/O")
	}
	close(release)
	a, b := <-joined, <-joined
	if a == nil || a != b || opens.Load() != 1 || g.overlay() != a {
		t.Fatalf("two joins: overlays %p %p, %d opened", a, b, opens.Load())
	}
	if err := g.leave(ctx); err != nil || g.overlay() != nil {
		t.Fatalf("leave: %v, overlay %p", err, g.overlay())
	}
	if err := g.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.join(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("join after close: %v", err)
	}
}
