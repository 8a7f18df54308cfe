package mailbox

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/hiersip/hiersip/domains"
)

// TestNoLookupLeak: publishing, storing, fetching and acknowledging leave
// no goroutine behind, on a domain of 10 nodes (more than the lookup
// quorum). kad-dht's SearchValue and GetValue with a quorum leave their
// lookup goroutines blocked until the context ends; before the mailbox
// ended it, this test ended with 265 goroutines more than it began with.
func TestNoLookupLeak(t *testing.T) {
	clk := newTestClock()
	ns := testNodes(t, 10, clk)
	ctx := context.Background()
	uk, _ := domains.GenerateUserKey()
	r := Recipient{AOR: aor(t, "sip:alice@pastry"), UserKey: uk}
	base := stableGoroutines()
	if err := ns[0].mb.Publish(ctx, r); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := ns[1+(i%8)%5].mb.Store(ctx, msg(fmt.Sprintf("sip:s%d@far", i%8), r.AOR.String(), uint32(i), "x")); err != nil {
			t.Fatal(err)
		}
	}
	b, err := ns[2].mb.Fetch(ctx, r)
	if err != nil || len(b.Messages) != 30 {
		t.Fatalf("%d messages, %v", len(b.Messages), err)
	}
	if err := ns[2].mb.Ack(ctx, r, b); err != nil {
		t.Fatal(err)
	}
	const slack = 10 // libp2p's own background goroutines come and go
	deadline := time.Now().Add(15 * time.Second)
	for n := runtime.NumGoroutine(); n > base+slack; n = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", n, base)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stableGoroutines returns the goroutine count once it has stopped
// changing for 300 ms (at most 10 s).
func stableGoroutines() int {
	n, since := runtime.NumGoroutine(), time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := runtime.NumGoroutine(); m != n {
			n, since = m, time.Now()
		} else if time.Since(since) > 300*time.Millisecond {
			break
		}
	}
	return n
}
