package node

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestCloseLeavesNoGoroutines runs two domains of nodes with SIP bridges, the
// election and the global overlay, places a call between them, closes every node
// and checks that no goroutine of theirs is left.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	// libp2p and quic-go start some process-wide goroutines the first time a host is
	// made; a first round, not checked, lets them start.
	t.Run("warm-up", func(t *testing.T) { startCallDomains(t, nil, 2, "pastry") })
	ignore := goleak.IgnoreCurrent()

	t.Run("round", func(t *testing.T) {
		ds := startCallDomains(t, nil, 3, "pastry", "can")
		bob := newUA(t, "sip:bob@bupt.pastry", member(ds["pastry"]))
		_ = newUA(t, "sip:alice@pku.can", member(ds["can"]))
		c := call(t, bob, "sip:alice@pku.can")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Hangup(ctx); err != nil {
			t.Fatalf("BYE: %v", err)
		}
		for _, d := range ds {
			for _, n := range d {
				if err := n.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
		}
	})
	// Connections and timers wind down asynchronously: wait for them, with a deadline.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := goleak.Find(ignore)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
}
