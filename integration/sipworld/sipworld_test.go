package sipworld_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/sipworld"
	"github.com/hiersip/hiersip/integration/softphone"
	"github.com/hiersip/hiersip/sipdns"
)

// call registers bob and alice at the Kamailio at addr and has alice call
// bob through it.
func call(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bob := softphone.StartBaresip(t, softphone.Account{AOR: "sip:bob@" + sipworld.Domain, Node: addr})
	alice := softphone.StartBaresip(t, softphone.Account{AOR: "sip:alice@" + sipworld.Domain, Node: addr})
	for _, p := range []*softphone.Baresip{bob, alice} {
		if err := p.WaitFor(ctx, "200 OK"); err != nil {
			t.Fatalf("registration at Kamailio %s: %v", addr, err)
		}
	}
	if err := alice.Dial(ctx, "sip:bob@"+sipworld.Domain); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*softphone.Baresip{"alice": alice, "bob": bob} {
		if err := p.WaitFor(ctx, "Call established"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := alice.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.WaitFor(ctx, "Call terminated", "session closed"); err != nil {
		t.Errorf("bob never saw the BYE: %v", err)
	}
}

// TestKamailioDomain: example.test is found through its NAPTR, SRV and A
// records on the test's DNS server; two baresip phones register at the
// Kamailio the resolver puts first and call each other through it.
func TestKamailioDomain(t *testing.T) {
	w := sipworld.Start(t, 2)
	r := w.Resolver(t)
	ctx := context.Background()
	targets, err := r.Resolve(ctx, "sip:bob@"+sipworld.Domain)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range targets {
		got = append(got, tg.Transport+" "+tg.Host+" "+tg.Addr.String())
	}
	k1, k2 := w.Kamailios[0], w.Kamailios[1]
	want := []string{"udp sip1.example.test " + k1.Addr, "udp sip2.example.test " + k2.Addr,
		"tcp sip1.example.test " + k1.Addr, "tcp sip2.example.test " + k2.Addr}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("targets\n got %v\nwant %v", got, want)
	}
	first, down, err := sipworld.FirstUp(ctx, targets, time.Second)
	if err != nil || len(down) != 0 || first.Addr.String() != k1.Addr {
		t.Fatalf("FirstUp = %v, down %v, %v; want %s", first, down, err, k1)
	}
	call(t, first.Addr.String())
}

// TestKamailioFailover: with the first SRV target down, the next one is
// used: the phones register and call through the second Kamailio.
func TestKamailioFailover(t *testing.T) {
	w := sipworld.Start(t, 2)
	if err := w.Kamailios[0].Stop(); err != nil {
		t.Fatal(err)
	}
	r := w.Resolver(t, sipdns.WithTransports("udp"))
	ctx := context.Background()
	targets, err := r.Resolve(ctx, "sip:bob@"+sipworld.Domain)
	if err != nil {
		t.Fatal(err)
	}
	first, down, err := sipworld.FirstUp(ctx, targets, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(down) != 1 || down[0].Host != "sip1.example.test" || first.Host != "sip2.example.test" || first.Addr.String() != w.Kamailios[1].Addr {
		t.Fatalf("FirstUp = %v after %v, want sip2 after sip1", first, down)
	}
	call(t, first.Addr.String())
}

// TestNoSuchDomain: a domain the DNS does not know fails at once with
// ErrNXDomain (604), after one query.
func TestNoSuchDomain(t *testing.T) {
	w := sipworld.Start(t, 1)
	r := w.Resolver(t)
	start := time.Now()
	_, err := r.Resolve(context.Background(), "sip:bob@nowhere.test")
	if code, _ := sipdns.StatusCode(err); code != 604 {
		t.Fatalf("nowhere.test: %v (status %d), want 604", err, code)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a non-existent domain took %v", d)
	}
}
