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

// BenchmarkCallSetup measures INVITE → 200 OK between hiersip UAs on loopback:
// between two nodes of one domain, across two domains with the proxies' global
// lookups cached (warm), and across two domains with the caller's proxy made to
// look the callee's domain up again in the global overlay before each call (cold).
// Each call is hung up before the next.
func BenchmarkCallSetup(b *testing.B) {
	doms := startCallDomains(b, nil, 3, "pastry", "can")
	bob := newUA(b, "sip:bob@bupt.pastry", member(doms["pastry"]))
	_ = newUA(b, "sip:carol@x.pastry", doms["pastry"][0])
	_ = newUA(b, "sip:alice@pku.can", member(doms["can"]))
	ctx := context.Background()
	// A first call of each kind opens the connections and fills the caches.
	for _, to := range []string{"sip:carol@x.pastry", "sip:alice@pku.can"} {
		if err := call(b, bob, to).Hangup(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name, to string
		cold     bool
	}{
		{"intra-domain", "sip:carol@x.pastry", false},
		{"inter-domain-warm", "sip:alice@pku.can", false},
		{"inter-domain-cold", "sip:alice@pku.can", true},
	} {
		b.Run(c.name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				if c.cold {
					proxyOf(b, doms["pastry"]).router.forget("pku.can")
				}
				start := time.Now()
				cl, err := bob.Call(ctx, c.to)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				if err := cl.Hangup(ctx); err != nil {
					b.Fatal(err)
				}
			}
			reportLatency(b, lat)
		})
	}
}
