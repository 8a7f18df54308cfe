package sipbridge

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkCallSetup measures INVITE → 200 OK (the caller's Call returns after the 200 and
// its ACK) between two nodes on loopback, and reports the median and p95.
func BenchmarkCallSetup(b *testing.B) {
	dir := newMemDir()
	n1 := newTestNode(b, dir, "pastry")
	n2 := newTestNode(b, dir, "pastry")
	connect(b, n1, n2)
	alice := newTestUA(b, "sip:alice@pastry", n1)
	bob := newTestUA(b, "sip:bob@pastry", n2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := bob.Register(ctx, 0); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		call, err := alice.Call(ctx, "sip:bob@pastry")
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		select {
		case <-bob.Incoming():
		case <-ctx.Done():
			b.Fatal("callee never saw the call")
		}
		if err := call.Hangup(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "median-µs")
	b.ReportMetric(float64(lat[(len(lat)*95)/100].Microseconds()), "p95-µs")
}
