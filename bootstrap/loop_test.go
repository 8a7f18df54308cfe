package bootstrap

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/libp2p/go-libp2p/core/peer"
)

// round is what the round hook saw of one round on the mock clock.
type round struct{ start, next time.Time }

// TestBootstrapBacksOffOnItsClock drives the loop of a lone node by its
// clock alone: the rounds come at the backoff the clock measures (1 s,
// 2 s, 4 s, then 4 s again, each ±10 %), never before their time, however
// much or little real time passes.
func TestBootstrapBacksOffOnItsClock(t *testing.T) {
	// A peer that is gone: dials to it are refused at once.
	gone := bsTestHost(t)
	dead := bsP2PAddrs(t, gone)
	_ = gone.Close()

	clk := clock.NewMock()
	clk.Set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	b, err := New(bsTestHost(t), "pastry", WithStatic(dead...), WithBackoff(time.Second, 4*time.Second),
		WithDialTimeout(5*time.Second), WithClock(clk), WithLogger(bsLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	rounds := make(chan round, 16)
	b.roundHook = func(start, next time.Time) { rounds <- round{start, next} }
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	wait := func(what string) round {
		t.Helper()
		select {
		case r := <-rounds:
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s", what)
		}
		return round{}
	}
	// The first round runs at once, without the clock moving.
	prev := wait("first round")
	if !prev.start.Equal(clk.Now()) {
		t.Fatalf("first round at %v, the clock at %v", prev.start, clk.Now())
	}
	for i, backoff := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if gap := prev.next.Sub(prev.start); gap < backoff-backoff/10 || gap > backoff+backoff/10 {
			t.Fatalf("round %d: next one %v later, want %v ± 10%%", i+1, gap, backoff)
		}
		// Up to just before the next round's time: no round.
		for clk.Now().Add(pollInterval).Before(prev.next) {
			clk.Add(pollInterval)
		}
		select {
		case r := <-rounds:
			t.Fatalf("round %d at %v, before its time %v", i+2, r.start, prev.next)
		default:
		}
		// Past it: the round comes, not before its time.
		clk.Add(pollInterval)
		r := wait("round after the backoff")
		if r.start.Before(prev.next) {
			t.Fatalf("round %d at %v, before its time %v", i+2, r.start, prev.next)
		}
		prev = r
	}
}

// TestBootstrapMDNSRetriesOnItsClock: a peer found by mDNS that cannot be
// reached is dialled again after the backoff of the bootstrapper's clock.
func TestBootstrapMDNSRetriesOnItsClock(t *testing.T) {
	gone := bsTestHost(t)
	info := peer.AddrInfo{ID: gone.ID(), Addrs: gone.Addrs()}
	_ = gone.Close()

	clk := clock.NewMock()
	clk.Set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	var failed []time.Time
	b, err := New(bsTestHost(t), "pastry", WithBackoff(time.Second, time.Minute), WithClock(clk),
		WithLogger(bsLogger(t)), WithEventHook(func(ev Event) {
			if ev.Kind == EventFailed && ev.Source == SourceMDNS {
				mu.Lock()
				failed = append(failed, clk.Now())
				mu.Unlock()
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := newMDNSDiscovery(ctx, b) // never started: the test plays mDNS
	defer func() {
		cancel() // as Bootstrapper.Close: the series waits on the clock until then
		_ = d.close()
	}()
	d.HandlePeerFound(info)
	fails := func() int { mu.Lock(); defer mu.Unlock(); return len(failed) }
	deadline := time.Now().Add(20 * time.Second)
	for fails() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d failed dials", fails())
		}
		clk.Add(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, min := range []time.Duration{time.Second - time.Second/10, 2*time.Second - 2*time.Second/10} {
		if gap := failed[i+1].Sub(failed[i]); gap < min {
			t.Errorf("retry %d %v of the clock after the failure, want at least %v", i+1, gap, min)
		}
	}
}
