package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestFirstRegistrationBurst: a node takes 250 first registrations a second
// (phones of an office coming up at once) in a domain of six nodes, each
// asking the peers close to the AOR about three times (owner check, device
// set and its read-back). Every one succeeds: the per-peer bound of lookups
// leaves room for the members' own work (at 20/s, 279 of 300 timed out).
func TestFirstRegistrationBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	nodes := startDomain(t, "burst", 6)
	const n = 200
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	tick := time.NewTicker(4 * time.Millisecond) // 250 a second, open loop
	defer tick.Stop()
	for i := range n {
		<-tick.C
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			aor := mustAOR(t, fmt.Sprintf("sip:phone%d@burst", i))
			if err := nodes[1].Register(ctx, aor, contact(fmt.Sprintf("sip:phone%d@127.0.0.1:5070", i), time.Hour)); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", aor, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d first registrations failed, the first: %v", len(errs), n, errs[0])
	}
}
