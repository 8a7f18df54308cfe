package sipbridge

import (
	"testing"
	"time"

	"github.com/hiersip/hiersip/domains"
)

func TestBindingCache(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newBindingCache(5 * time.Second)
	b := &domains.Binding{Peer: "p1", Expires: now.Add(time.Hour)}
	if _, ok := c.get("sip:bob@pastry", now); ok {
		t.Fatal("hit in an empty cache")
	}
	c.put("sip:bob@pastry", b, now)
	if e, ok := c.get("sip:bob@pastry", now.Add(4*time.Second)); !ok || e.peer != "p1" {
		t.Fatalf("get before the TTL: %v %v", e, ok)
	}
	if _, ok := c.get("sip:bob@pastry", now.Add(5*time.Second)); ok {
		t.Fatal("hit after the TTL")
	}
	// A binding that expires before the TTL is cached only until it expires.
	c.put("sip:bob@pastry", &domains.Binding{Peer: "p2", Expires: now.Add(time.Second)}, now)
	if _, ok := c.get("sip:bob@pastry", now.Add(time.Second)); ok {
		t.Fatal("hit after the binding expired")
	}
	c.put("sip:bob@pastry", b, now)
	c.forget("sip:bob@pastry")
	if _, ok := c.get("sip:bob@pastry", now); ok {
		t.Fatal("hit after forget")
	}
	off := newBindingCache(0)
	off.put("sip:bob@pastry", b, now)
	if _, ok := off.get("sip:bob@pastry", now); ok {
		t.Fatal("hit with the cache disabled")
	}
}
