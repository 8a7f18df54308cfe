package sipdns_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipdns"
)

// FuzzResolve: any URI (as a request's Request-URI could carry) gives targets
// or one of the package's errors, never a panic.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"sip:bob@example.test", "sips:bob@example.test;transport=tcp", "sip:[::1]:5060",
		"sip:bob@example.test;maddr=plain.test", "sip:a@b.c.d.e.f.g.h.test:0", "sip:x@-bad-.test", "tel:1"} {
		f.Add(s)
	}
	srv := startF(f)
	r, err := sipdns.New(sipdns.WithServers(srv.Addr), sipdns.WithTimeout(200*time.Millisecond, 1), sipdns.WithTransports("udp", "tcp", "tls"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	known := []error{sipdns.ErrNXDomain, sipdns.ErrNoTargets, sipdns.ErrUnavailable, sipdns.ErrDenied,
		sipdns.ErrBadURI, sipdns.ErrNoTransport}
	f.Fuzz(func(t *testing.T, uri string) {
		ts, err := r.Resolve(context.Background(), uri)
		if err == nil {
			if len(ts) == 0 {
				t.Fatalf("%q: no targets and no error", uri)
			}
			return
		}
		for _, k := range known {
			if errors.Is(err, k) {
				return
			}
		}
		t.Fatalf("%q: unclassified error %v", uri, err)
	})
}
