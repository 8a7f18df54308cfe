package sipdns_test

import (
	"context"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipdns"
	"github.com/hiersip/hiersip/sipdns/dnstest"
)

// BenchmarkResolve measures a full RFC 3263 resolution of a domain with
// NAPTR, SRV and A/AAAA records (7 questions) against a DNS server on
// loopback: cold (every question goes to the server) and warm (all from the
// cache).
func BenchmarkResolve(b *testing.B) {
	srv, err := dnstest.Start(zone...)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	for _, bc := range []struct {
		name string
		warm bool
	}{{"cold", false}, {"warm", true}} {
		b.Run(bc.name, func(b *testing.B) {
			r, err := sipdns.New(sipdns.WithServers(srv.Addr), sipdns.WithTimeout(time.Second, 1))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			ctx := context.Background()
			q := srv.Queries()
			b.ReportAllocs()
			for b.Loop() {
				if !bc.warm {
					r.Flush()
				}
				if _, err := r.Resolve(ctx, "sip:bob@example.test"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(srv.Queries()-q)/float64(b.N), "queries/op")
		})
	}
}
