package sipbridge

import (
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
)

// TestRegistrationsFollowTheClock: the times of a registration are those of the bridge's
// clock (WithClock), and a contact lapses once its expiry has passed on that clock: the
// registrar stops serving its address at once, and its sweep withdraws the binding,
// however little real time passes.
func TestRegistrationsFollowTheClock(t *testing.T) {
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	n := newTestNode(t, newMemDir(), "pastry", WithClock(clk))
	ctx := ctxT(t, 20*time.Second)
	alice := newTestUA(t, "sip:alice@pastry", n)
	c := sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: 41011}
	if _, err := alice.RegisterContact(ctx, c, time.Hour); err != nil {
		t.Fatal(err)
	}
	b := n.loc.binding("sip:alice@pastry")
	if b == nil || len(b.Contacts) != 1 {
		t.Fatalf("binding after REGISTER: %+v", b)
	}
	if want := clk.Now().Add(time.Hour); !b.Contacts[0].Expires.Equal(want) {
		t.Fatalf("contact expires %v, want %v (an hour of the clock)", b.Contacts[0].Expires, want)
	}
	at := &sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 41011}
	clk.Add(time.Hour - time.Second)
	if !n.b.reg.servesAddr(at) {
		t.Fatal("the contact lapsed a second before its expiry on the clock")
	}
	clk.Add(2 * time.Second)
	if n.b.reg.servesAddr(at) {
		t.Fatal("the contact is served after its expiry on the clock")
	}
	deadline := time.Now().Add(10 * time.Second)
	for b := n.loc.binding("sip:alice@pastry"); !b.Removed; b = n.loc.binding("sip:alice@pastry") {
		if time.Now().After(deadline) {
			t.Fatalf("the lapsed contact was not withdrawn: %+v", b)
		}
		clk.Add(250 * time.Millisecond) // the sweep's period
	}
}
