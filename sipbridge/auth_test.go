package sipbridge

import (
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipua"
)

// TestMessageDigest: a UA with credentials answers the node's challenge to a MESSAGE, as
// it does for REGISTER and INVITE; one without gets the 401.
func TestMessageDigest(t *testing.T) {
	users := NewUsers()
	users.Add("alice", "pastry", "alice-secret")
	users.Add("bob", "pastry", "bob-secret")
	n := newTestNode(t, newMemDir(), "pastry", WithUsers(users))
	ctx := ctxT(t, 10*time.Second)
	alice := newTestUA(t, "sip:alice@pastry", n, sipua.WithUACredentials("alice", "alice-secret"))
	bob := newTestUA(t, "sip:bob@pastry", n, sipua.WithUACredentials("bob", "bob-secret"))
	for _, ua := range []*sipua.UA{alice, bob} {
		if _, err := ua.Register(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	res, err := bob.Message(ctx, "sip:alice@pastry", "hello")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("MESSAGE with credentials: %v %v", res, err)
	}
	select {
	case m := <-alice.Messages():
		if string(m.Body) != "hello" {
			t.Fatalf("alice got %q", m.Body)
		}
	case <-ctx.Done():
		t.Fatal("alice got no MESSAGE")
	}
	eve := newTestUA(t, "sip:bob@pastry", n) // no password
	if res, err := eve.Message(ctx, "sip:alice@pastry", "hi"); err != nil || res.StatusCode != 401 {
		t.Fatalf("MESSAGE without credentials: %v %v, want 401", res, err)
	}
}

// TestUsersReplace: a reload of the users file (Replace) takes effect for the next
// request of a running bridge: a new user registers, a removed one is refused.
func TestUsersReplace(t *testing.T) {
	users := NewUsers()
	users.Add("alice", "pastry", "alice-secret")
	n := newTestNode(t, newMemDir(), "pastry", WithUsers(users))
	ctx := ctxT(t, 10*time.Second)
	alice := newTestUA(t, "sip:alice@pastry", n, sipua.WithUACredentials("alice", "alice-secret"))
	bob := newTestUA(t, "sip:bob@pastry", n, sipua.WithUACredentials("bob", "bob-secret"))
	if _, err := alice.Register(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if res, err := bob.Register(ctx, time.Hour); err == nil || res == nil || res.StatusCode != 403 {
		t.Fatalf("bob before the reload: %v %v, want 403", res, err)
	}
	next := NewUsers()
	next.Add("bob", "pastry", "bob-secret")
	users.Replace(next)
	if users.Len() != 1 {
		t.Fatalf("Len %d after Replace", users.Len())
	}
	if _, err := bob.Register(ctx, time.Hour); err != nil {
		t.Fatalf("bob after the reload: %v", err)
	}
	if res, err := alice.Register(ctx, time.Hour); err == nil || res == nil || res.StatusCode != 403 {
		t.Fatalf("alice after her removal: %v %v, want 403", res, err)
	}
}
