package mailbox

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	swarm "github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// testClock is a test clock that follows the real time (libp2p signs and
// dates things with it) and jumps ahead when told.
type testClock struct {
	clock.Clock
	mu  sync.Mutex
	off time.Duration
}

func newTestClock() *testClock { return &testClock{Clock: clock.New()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// mailOptions are the overlay options that make a domain overlay hold
// mailbox records (what package node will register by default).
func mailOptions(clk *testClock) []domains.OverlayOption {
	return []domains.OverlayOption{
		domains.WithClock(clk),
		domains.WithLookupLimit(0, 0),
		domains.WithDHTOptions(
			dht.NamespacedValidator(domains.NSMail, domains.MailValidator{Domain: "pastry", Now: clk.Now}),
			dht.NamespacedValidator(domains.NSMailboxKey, domains.MailboxKeyValidator{Domain: "pastry", Now: clk.Now}),
		),
	}
}

// node is one overlay member with its mailbox.
type node struct {
	h   host.Host
	ov  *domains.Overlay
	key crypto.PrivKey
	mb  *Mailbox
}

// testNodes starts n hosts on loopback in domain pastry, connected to each
// other, each with a mailbox; everything is closed when tb ends.
func testNodes(tb testing.TB, n int, clk *testClock, opts ...Option) []*node {
	tb.Helper()
	var ns []*node
	for range n {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = h.Close() })
		ov, err := domains.NewDomainOverlay(h, "pastry", mailOptions(clk)...)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = ov.Close() })
		k := h.Peerstore().PrivKey(h.ID())
		mb, err := New(ov.DHT(), "pastry", k, append([]Option{WithClock(clk)}, opts...)...)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = mb.Close() })
		ns = append(ns, &node{h: h, ov: ov, key: k, mb: mb})
	}
	for i, a := range ns {
		for _, b := range ns[i+1:] {
			connect(tb, a.h, b.h)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for slices.ContainsFunc(ns, func(x *node) bool { return x.ov.RoutingTableSize() < n-1 }) {
		if time.Now().After(deadline) {
			tb.Fatal("routing tables not full within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ns
}

// connect connects a to b, clearing a dial backoff left by crossing dials.
func connect(tb testing.TB, a, b host.Host) {
	tb.Helper()
	var err error
	for range 5 {
		if a.Network().Connectedness(b.ID()) == network.Connected {
			return
		}
		if err = a.Connect(context.Background(), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err == nil {
			return
		}
		if sw, ok := a.Network().(*swarm.Swarm); ok {
			sw.Backoff().Clear(b.ID())
		}
	}
	tb.Fatal(err)
}

// publishedAlice makes sip:alice@pastry a recipient with a user key of her own and
// publishes her mailbox key at mb.
func publishedAlice(t *testing.T, ctx context.Context, mb *Mailbox) Recipient {
	t.Helper()
	uk, err := domains.GenerateUserKey()
	if err != nil {
		t.Fatal(err)
	}
	alice := Recipient{AOR: aor(t, "sip:alice@pastry"), UserKey: uk}
	if err := mb.Publish(ctx, alice); err != nil {
		t.Fatalf("publishing alice's mailbox key: %v", err)
	}
	return alice
}
