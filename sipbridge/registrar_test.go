package sipbridge

import (
	"github.com/hiersip/hiersip/sipua"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
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
