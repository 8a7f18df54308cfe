package node

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// reportLatency reports the median and p95 of ds as benchmark metrics.
func reportLatency(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "median-µs")
	b.ReportMetric(float64(ds[len(ds)*95/100].Microseconds()), "p95-µs")
}

// BenchmarkRegister measures storing a binding in a 20-node domain on loopback.
func BenchmarkRegister(b *testing.B) {
	nodes := startDomain(b, "pastry", 20)
	ctx := context.Background()
	var ds []time.Duration
	b.ResetTimer()
	for i := range b.N {
		nd := nodes[i%len(nodes)]
		aor := mustAOR(b, fmt.Sprintf("sip:bench%d@bupt.pastry", i))
		start := time.Now()
		if err := nd.Register(ctx, aor, contact("sip:x@127.0.0.1:1", time.Hour)); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, ds)
}

// BenchmarkLookup measures resolving an AOR registered at another node of a
// 20-node domain on loopback.
func BenchmarkLookup(b *testing.B) {
	nodes := startDomain(b, "pastry", 20)
	ctx := context.Background()
	const users = 50
	for i := range users {
		if err := nodes[i%len(nodes)].Register(ctx, mustAOR(b, fmt.Sprintf("sip:u%d@bupt.pastry", i)), contact("sip:x@127.0.0.1:1", time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	var ds []time.Duration
	b.ResetTimer()
	for i := range b.N {
		nd := nodes[(i+7)%len(nodes)]
		aor := mustAOR(b, fmt.Sprintf("sip:u%d@bupt.pastry", i%users))
		start := time.Now()
		if _, err := nd.Lookup(ctx, aor); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, ds)
}
