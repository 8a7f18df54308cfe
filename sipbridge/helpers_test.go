package sipbridge

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipua"
)

// memDir is an in-memory location service shared by a test's nodes.
type memDir struct {
	mu      sync.Mutex
	m       map[string]*domains.Binding
	lookups int
}

func (d *memDir) lookupCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lookups
}

func newMemDir() *memDir { return &memDir{m: map[string]*domains.Binding{}} }

type memLocator struct {
	dir    *memDir
	domain string
	h      host.Host
}

func (l *memLocator) Domain() string { return l.domain }

func (l *memLocator) Register(_ context.Context, aor domains.AOR, contacts []domains.Contact) error {
	l.dir.mu.Lock()
	defer l.dir.mu.Unlock()
	old := l.dir.m[aor.String()]
	b := &domains.Binding{AOR: aor.String(), Peer: l.h.ID(), Addrs: l.h.Addrs(), Contacts: contacts, Created: time.Now()}
	if old != nil {
		b.Seq = old.Seq + 1
	}
	b.Expires = time.Now().Add(time.Minute)
	for _, c := range contacts {
		if c.Expires.After(b.Expires) || len(contacts) > 0 {
			b.Expires = c.Expires
		}
	}
	b.Removed = len(contacts) == 0
	l.dir.m[aor.String()] = b
	return nil
}

func (l *memLocator) Lookup(_ context.Context, aor domains.AOR) (*domains.Binding, error) {
	l.dir.mu.Lock()
	defer l.dir.mu.Unlock()
	l.dir.lookups++
	b, ok := l.dir.m[aor.String()]
	if !ok {
		return nil, domains.ErrNotFound
	}
	c := *b
	return &c, nil
}

func (l *memLocator) binding(aor string) *domains.Binding {
	l.dir.mu.Lock()
	defer l.dir.mu.Unlock()
	return l.dir.m[aor]
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SIPBRIDGE_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testNode struct {
	h   host.Host
	loc *memLocator
	b   *Bridge
}

func newTestNode(t testing.TB, dir *memDir, domain string, opts ...Option) *testNode {
	t.Helper()
	return newTestNodeHost(t, nil, dir, domain, opts...)
}

// newTestNodeHost is newTestNode on a host made with hostOpts besides its listen address.
func newTestNodeHost(t testing.TB, hostOpts []libp2p.Option, dir *memDir, domain string, opts ...Option) *testNode {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")}, hostOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	loc := &memLocator{dir: dir, domain: domain, h: h}
	opts = append([]Option{WithListen("127.0.0.1:0"), WithLogger(testLogger(t))}, opts...)
	b, err := New(h, loc, opts...)
	if err != nil {
		_ = h.Close()
		t.Fatal(err)
	}
	n := &testNode{h: h, loc: loc, b: b}
	t.Cleanup(func() {
		_ = b.Close()
		_ = h.Close()
	})
	return n
}

func connect(t testing.TB, a, b *testNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.h.Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

func newTestUA(t testing.TB, aor string, n *testNode, opts ...sipua.UAOption) *sipua.UA {
	t.Helper()
	opts = append([]sipua.UAOption{sipua.WithUALogger(testLogger(t))}, opts...)
	u, err := sipua.NewUA(aor, n.b.UDPAddr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return u
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
