package sipbridge

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/sipua"
)

func TestRegisterRules(t *testing.T) {
	dir := newMemDir()
	n := newTestNode(t, dir, "pastry", WithExpires(2*time.Second, time.Hour, 2*time.Hour))
	ctx := ctxT(t, 20*time.Second)

	// AOR outside the domain: 403 saying why
	stranger := newTestUA(t, "sip:eve@elsewhere", n)
	res, err := stranger.Register(ctx, 0)
	if err == nil || res == nil || res.StatusCode != 403 || !strings.Contains(res.Reason, "not in domain pastry") {
		t.Fatalf("foreign AOR: %v %v", res, err)
	}

	alice := newTestUA(t, "sip:alice@pastry", n)
	// below the minimum: 423 with Min-Expires
	res, err = alice.Register(ctx, time.Second)
	if err == nil || res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil || res.GetHeader("Min-Expires").Value() != "2" {
		t.Fatalf("too brief: %v %v", res, err)
	}
	// above the maximum: capped, and the 200 lists the binding with its expires
	res, err = alice.Register(ctx, 10*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := res.Contact(), 0
	if ch == nil {
		t.Fatalf("200 OK without Contact: %v", res)
	}
	if e, _ := ch.Params.Get("expires"); e != "7200" {
		t.Fatalf("granted expires %q, want 7200", e)
	}
	// a second contact; a query REGISTER lists both
	other := sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: 5999}
	if _, err := alice.RegisterContact(ctx, other, time.Hour); err != nil {
		t.Fatal(err)
	}
	res, err = alice.Query(ctx)
	if err != nil || len(res.GetHeaders("Contact")) != 2 {
		t.Fatalf("query: %v %v", res, err)
	}
	if b := n.loc.binding("sip:alice@pastry"); b == nil || len(b.Contacts) != 2 || b.Removed {
		t.Fatalf("overlay binding: %+v", b)
	}
	// Contact: * with Expires: 0 removes everything: a tombstone in the overlay
	if res, err := alice.UnregisterAll(ctx); err != nil || res.GetHeader("Contact") != nil {
		t.Fatalf("wildcard unregister: %v %v", res, err)
	}
	if b := n.loc.binding("sip:alice@pastry"); b == nil || !b.Removed || len(b.Contacts) != 0 {
		t.Fatalf("after unregister: %+v", b)
	}

	// a binding that is not refreshed lapses, in the overlay too
	if _, err := alice.Register(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if b := n.loc.binding("sip:alice@pastry"); b == nil || b.Removed {
		t.Fatalf("after register: %+v", b)
	}
	eventually(t, 5*time.Second, "the binding to lapse", func() bool {
		b := n.loc.binding("sip:alice@pastry")
		return b != nil && b.Removed
	})
}

func TestRegisterDigest(t *testing.T) {
	users, err := ReadUsers(strings.NewReader("# htdigest\nalice:pastry:" + HA1("alice", "pastry", "s3cret") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, newMemDir(), "pastry", WithUsers(users))
	ctx := ctxT(t, 10*time.Second)
	good := newTestUA(t, "sip:alice@pastry", n, sipua.WithUACredentials("alice", "s3cret"))
	if _, err := good.Register(ctx, 0); err != nil {
		t.Fatalf("good password: %v", err)
	}
	bad := newTestUA(t, "sip:alice@pastry", n, sipua.WithUACredentials("alice", "guess"))
	if res, err := bad.Register(ctx, 0); err == nil || res.StatusCode != 403 {
		t.Fatalf("bad password: %v %v", res, err)
	}
	none := newTestUA(t, "sip:bob@pastry", n)
	if res, err := none.Register(ctx, 0); err == nil || res.StatusCode != 401 {
		t.Fatalf("no credentials: %v %v", res, err)
	}
}

// TestRegistrarAddressIndex: whether an address is a registered contact is answered from the
// index by address, which follows every change: a REGISTER, a refresh, an unregister, a
// wildcard unregister and a lapse.
func TestRegistrarAddressIndex(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry", WithExpires(time.Second, time.Hour, 2*time.Hour))
	ctx := ctxT(t, 20*time.Second)
	r := n.b.reg
	at := func(port int) *sip.Uri { return &sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: port} }
	indexed := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		k := 0
		for _, l := range r.byAddr {
			k += len(l)
		}
		return k
	}
	alice := newTestUA(t, "sip:alice@pastry", n)
	c1 := sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: 41001}
	c2 := sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: 41002}
	for _, c := range []sip.Uri{c1, c2, c1} { // c1 refreshed: still one entry
		if _, err := alice.RegisterContact(ctx, c, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if !r.servesAddr(at(41001)) || !r.servesAddr(at(41002)) || r.servesAddr(at(41003)) || indexed() != 2 {
		t.Fatalf("after registering: 41001 %v 41002 %v 41003 %v, %d indexed", r.servesAddr(at(41001)), r.servesAddr(at(41002)), r.servesAddr(at(41003)), indexed())
	}
	if _, err := alice.RegisterContact(ctx, c2, -1); err != nil {
		t.Fatal(err)
	}
	if r.servesAddr(at(41002)) || !r.servesAddr(at(41001)) || indexed() != 1 {
		t.Fatalf("after unregistering 41002: %d indexed", indexed())
	}
	if _, err := alice.UnregisterAll(ctx); err != nil {
		t.Fatal(err)
	}
	if r.servesAddr(at(41001)) || indexed() != 0 {
		t.Fatalf("after Contact: *: %d indexed", indexed())
	}
	if _, err := alice.RegisterContact(ctx, c1, time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the contact to lapse", func() bool { return !r.servesAddr(at(41001)) })
	eventually(t, 5*time.Second, "the lapsed contact to leave the index", func() bool { return indexed() == 0 })
}

// BenchmarkServesAddr asks whether an address is a registered contact at a node holding
// 10,000 registrations (every in-dialog request from a peer asks it): it must not depend
// on how many there are.
func BenchmarkServesAddr(b *testing.B) {
	for _, regs := range []int{10, 10000} {
		b.Run(strconv.Itoa(regs), func(b *testing.B) {
			r := newRegistrar(&Bridge{cfg: config{clock: clock.New()}})
			now := time.Now()
			for i := range regs {
				u := sip.Uri{Scheme: "sip", User: "u" + strconv.Itoa(i), Host: "10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250), Port: 5060}
				c := &contactEntry{uri: u, key: contactKey(&u), addr: uriAddrKey(&u), expires: now.Add(time.Hour)}
				r.aors["sip:u"+strconv.Itoa(i)+"@pastry"] = &aorEntry{contacts: []*contactEntry{c}}
				r.indexLocked(c)
			}
			miss := &sip.Uri{Scheme: "sip", Host: "192.0.2.1", Port: 5060}
			hit := &sip.Uri{Scheme: "sip", Host: "10.0.0.7", Port: 5060}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if r.servesAddr(miss) || !r.servesAddr(hit) {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}
