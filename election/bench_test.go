package election

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkElectionMessages measures the election messages a node receives
// per HelloInterval in a settled domain of N nodes (in-memory simulation;
// a broadcast counts once per receiver). It reports the maximum over all
// nodes (the leading proxy), the maximum over non-proxy nodes, the mean, and
// the maximum a node received during the election from scratch.
func BenchmarkElectionMessages(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			s := newSim(b, n, Config{}, distinctMetrics(n))
			s.wire = n <= 100 // the encode round trip is tested elsewhere; keep N=1000 quick
			if _, ok := s.until(30*time.Second, func() bool { return s.settled(-1, 1, 2) }); !ok {
				b.Fatal("did not settle")
			}
			startup := 0
			for _, c := range s.received {
				startup = max(startup, c)
			}
			s.advance(5 * time.Second) // let the bid floor settle
			clear(s.received)
			interval := s.nodes[0].e.Config().HelloInterval
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.advance(interval)
			}
			b.StopTimer()
			if !s.settled(-1, 1, 2) {
				b.Fatal("not settled at the end")
			}
			leader := s.nodes[0].e.Leader()
			var maxAll, maxOther, total int
			for _, nd := range s.nodes {
				c := s.received[nd.id]
				total += c
				maxAll = max(maxAll, c)
				if nd.id != leader {
					maxOther = max(maxOther, c)
				}
			}
			iv := float64(b.N)
			b.ReportMetric(float64(maxAll)/iv, "max-msgs/node/interval")
			b.ReportMetric(float64(maxOther)/iv, "max-nonleader-msgs/node/interval")
			b.ReportMetric(float64(total)/iv/float64(n), "mean-msgs/node/interval")
			b.ReportMetric(float64(startup), "startup-max-msgs/node")
		})
	}
}
