package sipdns_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipdns"
	"github.com/hiersip/hiersip/sipdns/dnstest"
	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// zone is example.test with NAPTR → SRV → A/AAAA for three transports, two
// servers per transport; other.test without NAPTR; plain.test with only an
// address; nosip.test with neither.
var zone = []string{
	`example.test. 300 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 45`,
	`example.test. 60 IN NAPTR 10 50 "s" "SIPS+D2T" "" _sips._tcp.example.test.`,
	`example.test. 60 IN NAPTR 20 50 "s" "SIP+D2T" "" _sip._tcp.example.test.`,
	`example.test. 60 IN NAPTR 30 50 "s" "SIP+D2U" "" _sip._udp.example.test.`,
	`example.test. 60 IN NAPTR 40 50 "s" "SIP+D2S" "" _sip._sctp.example.test.`,
	`_sips._tcp.example.test. 60 IN SRV 10 0 5061 sip1.example.test.`,
	`_sip._tcp.example.test. 60 IN SRV 10 0 5060 sip1.example.test.`,
	`_sip._tcp.example.test. 60 IN SRV 20 0 5070 sip2.example.test.`,
	`_sip._udp.example.test. 60 IN SRV 10 0 5060 sip1.example.test.`,
	`_sip._udp.example.test. 60 IN SRV 20 0 5070 sip2.example.test.`,
	`sip1.example.test. 60 IN A 127.0.0.1`,
	`sip2.example.test. 60 IN A 127.0.0.2`,
	`sip2.example.test. 60 IN AAAA ::1`,
	`other.test. 300 IN SOA ns.other.test. admin.other.test. 1 3600 600 86400 45`,
	`_sip._udp.other.test. 60 IN SRV 10 0 5080 sip.other.test.`,
	`_sip._tcp.other.test. 60 IN SRV 10 0 5081 sip.other.test.`,
	`sip.other.test. 60 IN A 127.0.0.3`,
	`plain.test. 60 IN A 127.0.0.4`,
	`nosip.test. 300 IN SOA ns.nosip.test. admin.nosip.test. 1 3600 600 86400 45`,
	`nosip.test. 60 IN TXT "no SIP here"`,
}

func start(t *testing.T, records ...string) *dnstest.Server {
	t.Helper()
	srv, err := dnstest.Start(records...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func startF(f *testing.F) *dnstest.Server {
	srv, err := dnstest.Start(zone...)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	return srv
}

func newResolver(t *testing.T, srv *dnstest.Server, opts ...sipdns.Option) *sipdns.Resolver {
	t.Helper()
	r, err := sipdns.New(append([]sipdns.Option{sipdns.WithServers(srv.Addr), sipdns.WithTimeout(300*time.Millisecond, 1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// strs renders targets as "transport host addr" for comparison.
func strs(ts []sipdns.Target) string {
	var out []string
	for _, t := range ts {
		out = append(out, t.String())
	}
	return strings.Join(out, ", ")
}

func TestResolve(t *testing.T) {
	srv := start(t, zone...)
	udpTCP := newResolver(t, srv)
	all := newResolver(t, srv, sipdns.WithTransports("tls", "tcp", "udp"))
	v4 := newResolver(t, srv, sipdns.WithAddressFamilies(true, false, false))
	v6first := newResolver(t, srv, sipdns.WithAddressFamilies(true, true, true))
	for _, tc := range []struct {
		name string
		r    *sipdns.Resolver
		uri  string
		want string
	}{
		// NAPTR: order 10 is TLS, skipped when TLS is off; then TCP, UDP;
		// SCTP never. Within a transport, SRV priority: sip1 before sip2.
		{"naptr", udpTCP, "sip:bob@example.test",
			"tcp sip1.example.test 127.0.0.1:5060, tcp sip2.example.test 127.0.0.2:5070, tcp sip2.example.test [::1]:5070, " +
				"udp sip1.example.test 127.0.0.1:5060, udp sip2.example.test 127.0.0.2:5070, udp sip2.example.test [::1]:5070"},
		{"naptr tls", all, "sip:bob@example.test",
			"tls sip1.example.test 127.0.0.1:5061, tcp sip1.example.test 127.0.0.1:5060, tcp sip2.example.test 127.0.0.2:5070, tcp sip2.example.test [::1]:5070, " +
				"udp sip1.example.test 127.0.0.1:5060, udp sip2.example.test 127.0.0.2:5070, udp sip2.example.test [::1]:5070"},
		{"sips takes only SIPS+D2T", all, "sips:bob@example.test", "tls sip1.example.test 127.0.0.1:5061"},
		{"ipv4 only", v4, "sip:bob@example.test;transport=udp",
			"udp sip1.example.test 127.0.0.1:5060, udp sip2.example.test 127.0.0.2:5070"},
		{"ipv6 first", v6first, "sip:bob@example.test;transport=udp",
			"udp sip1.example.test 127.0.0.1:5060, udp sip2.example.test [::1]:5070, udp sip2.example.test 127.0.0.2:5070"},
		// No NAPTR: SRV of every transport in the client's order.
		{"srv without naptr", udpTCP, "sip:bob@other.test", "udp sip.other.test 127.0.0.3:5080, tcp sip.other.test 127.0.0.3:5081"},
		{"srv in client order", newResolver(t, srv, sipdns.WithTransports("tcp", "udp")), "sip:bob@other.test",
			"tcp sip.other.test 127.0.0.3:5081, udp sip.other.test 127.0.0.3:5080"},
		// Neither: A with the default port and transport.
		{"address only", udpTCP, "sip:bob@plain.test", "udp plain.test 127.0.0.4:5060"},
		{"sips address only", all, "sips:bob@plain.test", "tls plain.test 127.0.0.4:5061"},
		// A transport parameter: that transport's SRV, else A.
		{"transport param", udpTCP, "sip:bob@example.test;transport=TCP",
			"tcp sip1.example.test 127.0.0.1:5060, tcp sip2.example.test 127.0.0.2:5070, tcp sip2.example.test [::1]:5070"},
		{"transport param no srv", udpTCP, "sip:bob@plain.test;transport=tcp", "tcp plain.test 127.0.0.4:5060"},
		{"sips transport tcp is tls", all, "sips:bob@example.test;transport=tcp", "tls sip1.example.test 127.0.0.1:5061"},
		// A port: A/AAAA only, no NAPTR or SRV.
		{"explicit port", udpTCP, "sip:bob@sip2.example.test:5999", "udp sip2.example.test 127.0.0.2:5999, udp sip2.example.test [::1]:5999"},
		{"explicit port sips", all, "sips:bob@sip1.example.test:6000", "tls sip1.example.test 127.0.0.1:6000"},
		// Numeric IPs: no DNS.
		{"ip", udpTCP, "sip:bob@192.0.2.7", "udp 192.0.2.7 192.0.2.7:5060"},
		{"ip port transport", udpTCP, "sip:bob@192.0.2.7:5090;transport=tcp", "tcp 192.0.2.7 192.0.2.7:5090"},
		{"sips ip", all, "sips:bob@192.0.2.7", "tls 192.0.2.7 192.0.2.7:5061"},
		{"ipv6", udpTCP, "sip:bob@[2001:db8::1]:5070", "udp 2001:db8::1 [2001:db8::1]:5070"},
		// maddr overrides the host.
		{"maddr", udpTCP, "sip:bob@example.test;maddr=plain.test", "udp plain.test 127.0.0.4:5060"},
		{"case and dot", udpTCP, "sip:bob@Plain.TEST.", "udp plain.test 127.0.0.4:5060"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := tc.r.Resolve(context.Background(), tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			if got := strs(ts); got != tc.want {
				t.Errorf("Resolve(%s)\n got %s\nwant %s", tc.uri, got, tc.want)
			}
		})
	}
}

func TestDomainIsTheURIHost(t *testing.T) {
	srv := start(t, zone...)
	r := newResolver(t, srv, sipdns.WithTransports("tls"))
	ts, err := r.Resolve(context.Background(), "sips:bob@Example.test")
	if err != nil {
		t.Fatal(err)
	}
	if ts[0].Domain != "example.test" || ts[0].Host != "sip1.example.test" {
		t.Errorf("target %+v: want Domain example.test (the TLS identity), Host sip1.example.test", ts[0])
	}
}

func TestNegative(t *testing.T) {
	srv := start(t, zone...)
	r := newResolver(t, srv)
	for _, tc := range []struct {
		uri    string
		want   error
		status int
	}{
		{"sip:bob@nowhere.test", sipdns.ErrNXDomain, 604},
		{"sip:bob@nowhere.test:5060", sipdns.ErrNXDomain, 604},
		{"sip:bob@nowhere.test;transport=tcp", sipdns.ErrNXDomain, 604},
		{"sip:bob@nosip.test", sipdns.ErrNoTargets, 404},
		{"tel:+15551234", sipdns.ErrBadURI, 416},
		{"sips:bob@example.test;transport=udp", sipdns.ErrBadURI, 400},
		{"sip:bob@example.test;transport=sctp", sipdns.ErrNoTransport, 503},
		{"sip:bob@example.test;transport=tls", sipdns.ErrNoTransport, 503},
		{"sips:bob@example.test", sipdns.ErrNoTransport, 503}, // TLS not enabled
		{"sips:bob@192.0.2.1", sipdns.ErrNoTransport, 503},
		{"sip:bob@exa..mple.test", sipdns.ErrBadURI, 400},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			_, err := r.Resolve(context.Background(), tc.uri)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Resolve(%s) = %v, want %v", tc.uri, err, tc.want)
			}
			if code, _ := sipdns.StatusCode(err); code != tc.status {
				t.Errorf("StatusCode(%v) = %d, want %d", err, code, tc.status)
			}
		})
	}
}

// An NXDOMAIN is answered after one query, and a second time from the
// cache (RFC 2308), so that a proxy answers 604 at once.
func TestNXDomainIsQuick(t *testing.T) {
	srv := start(t, zone...)
	r := newResolver(t, srv)
	before := srv.Queries()
	if _, err := r.Resolve(context.Background(), "sip:bob@nowhere.test"); !errors.Is(err, sipdns.ErrNXDomain) {
		t.Fatal(err)
	}
	if n := srv.Queries() - before; n != 1 {
		t.Errorf("NXDOMAIN took %d queries, want 1 (the NAPTR query)", n)
	}
	if _, err := r.Resolve(context.Background(), "sip:alice@nowhere.test"); !errors.Is(err, sipdns.ErrNXDomain) {
		t.Fatal(err)
	}
	if n := srv.Queries() - before; n != 1 {
		t.Errorf("a second NXDOMAIN asked the server again (%d queries)", n)
	}
}

func TestUnavailable(t *testing.T) {
	srv := start(t, zone...)
	r := newResolver(t, srv)
	srv.Fail(dns.RcodeServerFailure)
	_, err := r.Resolve(context.Background(), "sip:bob@example.test")
	if !errors.Is(err, sipdns.ErrUnavailable) {
		t.Fatalf("SERVFAIL: %v, want ErrUnavailable", err)
	}
	if code, _ := sipdns.StatusCode(err); code != 503 {
		t.Errorf("status %d, want 503", code)
	}
	// A failure is not cached: the next query after the server recovers works.
	srv.Fail(0)
	if _, err := r.Resolve(context.Background(), "sip:bob@example.test"); err != nil {
		t.Fatal(err)
	}

	// A server that does not answer at all: a timeout.
	dead := start(t)
	addr := dead.Addr
	dead.Close()
	r2, err := sipdns.New(sipdns.WithServers(addr), sipdns.WithTimeout(100*time.Millisecond, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	start := time.Now()
	if _, err := r2.Resolve(context.Background(), "sip:bob@example.test"); !errors.Is(err, sipdns.ErrUnavailable) {
		t.Fatalf("dead server: %v, want ErrUnavailable", err)
	}
	t.Logf("dead server: failed after %v", time.Since(start))
}

// The second server is asked when the first does not answer.
func TestServerFailover(t *testing.T) {
	srv := start(t, zone...)
	dead := start(t)
	deadAddr := dead.Addr
	dead.Close()
	r, err := sipdns.New(sipdns.WithServers(deadAddr, srv.Addr), sipdns.WithTimeout(100*time.Millisecond, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Resolve(context.Background(), "sip:bob@other.test"); err != nil {
		t.Fatal(err)
	}
}

func TestCache(t *testing.T) {
	srv := start(t, zone...)
	now := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r := newResolver(t, srv, sipdns.WithClock(clock))
	ctx := context.Background()

	q0 := srv.Queries()
	if _, err := r.Resolve(ctx, "sip:bob@example.test"); err != nil {
		t.Fatal(err)
	}
	cold := srv.Queries() - q0
	if _, err := r.Resolve(ctx, "sip:bob@example.test"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Queries() - q0 - cold; n != 0 {
		t.Errorf("warm resolution sent %d queries, want 0 (cold sent %d)", n, cold)
	}
	st := r.Stats()
	if st.Hits == 0 || st.Entries == 0 {
		t.Errorf("stats %+v: want hits and entries", st)
	}
	// The records' TTL is 60 s: after 61 s they are asked again.
	advance(61 * time.Second)
	q1 := srv.Queries()
	if _, err := r.Resolve(ctx, "sip:bob@example.test"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Queries() - q1; n != cold {
		t.Errorf("after the TTL: %d queries, want %d", n, cold)
	}
	// A changed record is seen once the old one expired.
	srv.Remove("sip1.example.test.", dns.TypeA)
	if err := srv.Add(`sip1.example.test. 60 IN A 127.0.0.9`); err != nil {
		t.Fatal(err)
	}
	ts, _ := r.Resolve(ctx, "sip:bob@example.test;transport=udp")
	if ts[0].Addr.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("before expiry: %v, want the cached 127.0.0.1", ts[0])
	}
	advance(61 * time.Second)
	ts, _ = r.Resolve(ctx, "sip:bob@example.test;transport=udp")
	if ts[0].Addr.Addr() != netip.MustParseAddr("127.0.0.9") {
		t.Errorf("after expiry: %v, want 127.0.0.9", ts[0])
	}

	// Negative answers are kept for the SOA minimum (45 s here).
	q2 := srv.Queries()
	_, _ = r.Resolve(ctx, "sip:bob@nowhere.example.test")
	advance(44 * time.Second)
	_, _ = r.Resolve(ctx, "sip:bob@nowhere.example.test")
	if n := srv.Queries() - q2; n != 1 {
		t.Errorf("negative answer within its TTL: %d queries, want 1", n)
	}
	advance(2 * time.Second)
	_, _ = r.Resolve(ctx, "sip:bob@nowhere.example.test")
	if n := srv.Queries() - q2; n != 2 {
		t.Errorf("negative answer after its TTL: %d queries, want 2", n)
	}
}

func TestCacheBounded(t *testing.T) {
	var recs []string
	for i := range 50 {
		recs = append(recs, fmt.Sprintf("h%d.test. 60 IN A 127.0.1.%d", i, i))
	}
	srv := start(t, recs...)
	r := newResolver(t, srv, sipdns.WithCacheSize(10), sipdns.WithAddressFamilies(true, false, false))
	for i := range 50 {
		if _, err := r.Resolve(context.Background(), fmt.Sprintf("sip:h%d.test:5060", i)); err != nil {
			t.Fatal(err)
		}
	}
	if st := r.Stats(); st.Entries != 10 || st.Evicted != 40 {
		t.Errorf("stats %+v: want 10 entries, 40 evicted", st)
	}
	off := newResolver(t, srv, sipdns.WithCacheSize(0))
	q := srv.Queries()
	for range 2 {
		_, _ = off.Resolve(context.Background(), "sip:h1.test:5060")
	}
	if n := srv.Queries() - q; n != 4 {
		t.Errorf("cache off: %d queries, want 4 (A and AAAA twice)", n)
	}
}

// Concurrent resolutions of one name share one query per question.
func TestConcurrentShareQueries(t *testing.T) {
	srv := start(t, zone...)
	r := newResolver(t, srv)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := r.Resolve(context.Background(), "sip:bob@example.test"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// NAPTR, 2 SRV, 2 hosts × (A, AAAA) = 7 questions.
	if n := srv.Queries(); n > 14 {
		t.Errorf("20 concurrent resolutions sent %d queries, want about 7", n)
	}
}

// An answer too large for UDP is asked again over TCP.
func TestTruncatedAnswerUsesTCP(t *testing.T) {
	recs := []string{`big.test. 60 IN A 127.0.0.5`}
	for i := range 60 {
		recs = append(recs, fmt.Sprintf("_sip._udp.big.test. 60 IN SRV %d 0 5060 a-rather-long-server-name-%02d.big.test.", i, i))
	}
	recs = append(recs, `a-rather-long-server-name-00.big.test. 60 IN A 127.0.0.6`)
	srv := start(t, recs...)
	r := newResolver(t, srv, sipdns.WithAddressFamilies(true, false, false))
	ts, err := r.Resolve(context.Background(), "sip:bob@big.test;transport=udp")
	if err != nil {
		t.Fatal(err)
	}
	if ts[0].Host != "a-rather-long-server-name-00.big.test" {
		t.Errorf("first target %v, want the priority-0 server", ts[0])
	}
}

func TestSRVWeights(t *testing.T) {
	srv := start(t,
		`_sip._udp.w.test. 60 IN SRV 10 10 5060 a.w.test.`,
		`_sip._udp.w.test. 60 IN SRV 10 30 5060 b.w.test.`,
		`_sip._udp.w.test. 60 IN SRV 10 0 5060 z.w.test.`,
		`_sip._udp.w.test. 60 IN SRV 5 0 5060 first.w.test.`,
		`_sip._udp.w.test. 60 IN SRV 20 0 5060 last.w.test.`,
		`a.w.test. 60 IN A 127.0.0.10`, `b.w.test. 60 IN A 127.0.0.11`, `z.w.test. 60 IN A 127.0.0.12`,
		`first.w.test. 60 IN A 127.0.0.13`, `last.w.test. 60 IN A 127.0.0.14`,
	)
	r := newResolver(t, srv, sipdns.WithAddressFamilies(true, false, false))
	counts := map[string]int{}
	const n = 2000
	for range n {
		ts, err := r.Resolve(context.Background(), "sip:w.test;transport=udp")
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 5 || ts[0].Host != "first.w.test" || ts[4].Host != "last.w.test" {
			t.Fatalf("order %s: want first.w.test first and last.w.test last (priorities)", strs(ts))
		}
		counts[ts[1].Host]++
	}
	// Weights 10:30:0 → a 25 %, b 75 %, z (weight 0) almost never first.
	if a := counts["a.w.test"]; a < n*15/100 || a > n*35/100 {
		t.Errorf("a chosen first %d of %d times, want about 25 %%", a, n)
	}
	if b := counts["b.w.test"]; b < n*65/100 || b > n*85/100 {
		t.Errorf("b chosen first %d of %d times, want about 75 %%", b, n)
	}
	if z := counts["z.w.test"]; z > n*5/100 {
		t.Errorf("weight-0 z chosen first %d of %d times", z, n)
	}
}

func TestSRVDot(t *testing.T) {
	srv := start(t,
		`_sip._udp.dot.test. 60 IN SRV 0 0 0 .`,
		`dot.test. 60 IN A 127.0.0.20`,
	)
	r := newResolver(t, srv)
	// "." says the service is not offered: RFC 3263 falls back to A.
	ts, err := r.Resolve(context.Background(), "sip:dot.test;transport=udp")
	if err != nil {
		t.Fatal(err)
	}
	if strs(ts) != "udp dot.test 127.0.0.20:5060" {
		t.Errorf("got %s", strs(ts))
	}
}

func TestPolicy(t *testing.T) {
	srv := start(t, zone...)
	ctx := context.Background()
	deny := newResolver(t, srv, sipdns.WithPolicy(&sipdns.Policy{Deny: []string{"example.test"}}))
	q := srv.Queries()
	_, err := deny.Resolve(ctx, "sip:bob@sub.example.test")
	if !errors.Is(err, sipdns.ErrDenied) {
		t.Fatalf("denied suffix: %v", err)
	}
	if code, _ := sipdns.StatusCode(err); code != 403 {
		t.Errorf("status %d, want 403", code)
	}
	if srv.Queries() != q {
		t.Error("a refused domain was looked up")
	}
	if _, err := deny.Resolve(ctx, "sip:bob@other.test"); err != nil {
		t.Errorf("other.test: %v", err)
	}

	allow := newResolver(t, srv, sipdns.WithPolicy(&sipdns.Policy{Allow: []string{"other.test"}, Deny: []string{"bad.other.test"}}))
	if _, err := allow.Resolve(ctx, "sip:bob@example.test"); !errors.Is(err, sipdns.ErrDenied) {
		t.Errorf("not in allow list: %v", err)
	}
	if _, err := allow.Resolve(ctx, "sip:bob@other.test"); err != nil {
		t.Errorf("in allow list: %v", err)
	}
	if _, err := allow.Resolve(ctx, "sip:bob@bad.other.test"); !errors.Is(err, sipdns.ErrDenied) {
		t.Errorf("longer deny: %v", err)
	}

	internal := newResolver(t, srv, sipdns.WithPolicy(&sipdns.Policy{DenyAddrs: sipdns.DenyInternal}))
	if _, err := internal.Resolve(ctx, "sip:bob@example.test"); !errors.Is(err, sipdns.ErrDenied) {
		t.Errorf("loopback targets: %v, want ErrDenied", err)
	}
	if _, err := internal.Resolve(ctx, "sip:bob@127.0.0.1"); !errors.Is(err, sipdns.ErrDenied) {
		t.Errorf("loopback literal: %v, want ErrDenied", err)
	}

	routed := newResolver(t, srv, sipdns.WithPolicy(&sipdns.Policy{Routes: map[string]string{"far.test": "sip:plain.test:5090;transport=tcp"}}))
	ts, err := routed.Resolve(ctx, "sip:bob@x.far.test")
	if err != nil {
		t.Fatal(err)
	}
	if strs(ts) != "tcp plain.test 127.0.0.4:5090" || ts[0].Domain != "plain.test" {
		t.Errorf("route: %s (domain %s)", strs(ts), ts[0].Domain)
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, p := range []*sipdns.Policy{
		{Allow: []string{""}},
		{Deny: []string{"a..b"}},
		{Routes: map[string]string{"x.test": "tel:+1"}},
		{Routes: map[string]string{"x.test": "not a uri"}},
	} {
		if err := p.Validate(); !errors.Is(err, sipdns.ErrConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrConfig", p, err)
		}
	}
	if err := (&sipdns.Policy{Allow: []string{"*.example.com", "."}, Deny: []string{"Example.ORG."}}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestPolicyMatch(t *testing.T) {
	p := &sipdns.Policy{Deny: []string{"example.com"}}
	for domain, denied := range map[string]bool{
		"example.com": true, "sip.example.com": true, "EXAMPLE.COM.": true,
		"badexample.com": false, "example.co": false, "com": false,
	} {
		if err := p.CheckDomain(domain); (err != nil) != denied {
			t.Errorf("CheckDomain(%s) = %v, want denied %v", domain, err, denied)
		}
	}
	all := &sipdns.Policy{Deny: []string{"."}, Allow: []string{"ok.test"}}
	if all.CheckDomain("ok.test") != nil || all.CheckDomain("other.test") == nil {
		t.Error("deny . with allow ok.test")
	}
	var none *sipdns.Policy
	if none.CheckDomain("x") != nil || none.CheckAddr(netip.MustParseAddr("127.0.0.1")) != nil || none.Route("x") != "" {
		t.Error("nil policy refuses")
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []sipdns.Option{
		sipdns.WithTransports("sctp"), sipdns.WithTransports(), sipdns.WithCacheSize(-1),
		sipdns.WithTimeout(0, 1), sipdns.WithAddressFamilies(false, false, false), sipdns.WithMaxTargets(0),
		sipdns.WithPolicy(&sipdns.Policy{Deny: []string{""}}), sipdns.WithLogger(nil),
	} {
		if _, err := sipdns.New(sipdns.WithServers("127.0.0.1:53"), o); !errors.Is(err, sipdns.ErrConfig) {
			t.Errorf("option: %v, want ErrConfig", err)
		}
	}
	if _, err := sipdns.New(sipdns.WithResolvConf("/nonexistent/resolv.conf")); !errors.Is(err, sipdns.ErrConfig) {
		t.Errorf("missing resolv.conf: %v", err)
	}
	r, err := sipdns.New(sipdns.WithServers("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Servers(); len(s) != 1 || s[0] != "127.0.0.1:53" {
		t.Errorf("servers %v", s)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); !errors.Is(err, sipdns.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.Resolve(context.Background(), "sip:127.0.0.1"); !errors.Is(err, sipdns.ErrClosed) {
		t.Errorf("Resolve after Close: %v", err)
	}
}

func TestMaxTargets(t *testing.T) {
	srv := start(t, zone...)
	r := newResolver(t, srv, sipdns.WithMaxTargets(2))
	ts, err := r.Resolve(context.Background(), "sip:bob@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 {
		t.Errorf("%d targets, want 2", len(ts))
	}
}

func TestContextCancelled(t *testing.T) {
	srv := start(t, zone...)
	r := newResolver(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Resolve(ctx, "sip:bob@example.test"); !errors.Is(err, sipdns.ErrUnavailable) {
		t.Errorf("cancelled: %v", err)
	}
}
