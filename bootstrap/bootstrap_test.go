package bootstrap

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func bsTestHost(t *testing.T) host.Host {
	t.Helper()
	return testHost(t, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
}

func bsLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(bsLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type bsLogWriter struct{ t *testing.T }

func (w bsLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func bsP2PAddrs(t *testing.T, h host.Host) []ma.Multiaddr {
	t.Helper()
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// bsConfig returns the options of a test bootstrapper: quick backoff, logs
// to t. Tests append theirs.
func bsConfig(t *testing.T) []Option {
	return []Option{WithBackoff(20*time.Millisecond, 200*time.Millisecond), WithLogger(bsLogger(t))}
}

// bsStart starts b and closes it at cleanup.
func bsStart(t *testing.T, h host.Host, cfg []Option) *Bootstrapper {
	t.Helper()
	b, err := New(h, "pastry", cfg...)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func bsWaitJoined(t *testing.T, b *Bootstrapper) {
	t.Helper()
	select {
	case <-b.Joined():
	case <-time.After(10 * time.Second):
		t.Fatal("not joined within 10 s")
	}
}

func TestBootstrapStatic(t *testing.T) {
	seed, h := bsTestHost(t), bsTestHost(t)
	var mu sync.Mutex
	var events []Event
	cfg := bsConfig(t)
	cfg = append(cfg, WithStatic(bsP2PAddrs(t, seed)...))
	cfg = append(cfg, WithEventHook(func(ev Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }))
	b := bsStart(t, h, cfg)
	bsWaitJoined(t, b)
	if got := b.Source(); got != SourceStatic {
		t.Errorf("Source() = %q, want %q", got, SourceStatic)
	}
	if len(h.Network().ConnsToPeer(seed.ID())) == 0 {
		t.Error("not connected to the seed")
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := b.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
	if err := b.Start(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Start after Close = %v, want net.ErrClosed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	var connected, joined bool
	for _, ev := range events {
		connected = connected || ev.Kind == EventConnected && ev.Source == SourceStatic && ev.Peer == seed.ID()
		joined = joined || ev.Kind == EventJoined && ev.Source == SourceStatic
	}
	if !connected || !joined {
		t.Errorf("events %v lack connected/joined from static", events)
	}
}

func TestBootstrapStartTwice(t *testing.T) {
	b := bsStart(t, bsTestHost(t), bsConfig(t))
	if err := b.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start = %v, want ErrStarted", err)
	}
}

// TestBootstrapRetriesWhileAlone: the static peer appears only after the
// first attempts failed; the bootstrapper keeps trying with backoff.
func TestBootstrapRetriesWhileAlone(t *testing.T) {
	// Reserve a port, then free it for the late seed.
	probe := bsTestHost(t)
	addr := probe.Addrs()[0]
	seedKeyHost, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		t.Fatal(err)
	}
	seedID := seedKeyHost.ID()
	key := seedKeyHost.Peerstore().PrivKey(seedID)
	_ = seedKeyHost.Close()
	_ = probe.Close()

	h := bsTestHost(t)
	var mu sync.Mutex
	failures := 0
	cfg := bsConfig(t)
	cfg = append(cfg, WithStatic(addr.Encapsulate(ma.StringCast("/p2p/"+seedID.String()))))
	cfg = append(cfg, WithDialTimeout(time.Second))
	cfg = append(cfg, WithEventHook(func(ev Event) {
		if ev.Kind == EventFailed {
			mu.Lock()
			failures++
			mu.Unlock()
		}
	}))
	b := bsStart(t, h, cfg)
	waitFor(t, 10*time.Second, "2 failed attempts", func() bool { mu.Lock(); defer mu.Unlock(); return failures >= 2 })
	seed, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrs(addr))
	if err != nil {
		t.Skipf("cannot re-listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = seed.Close() })
	bsWaitJoined(t, b)
}

func TestBootstrapCache(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "peers-pastry.json")
	seed := bsTestHost(t)

	// First run: joins by a static address and saves the cache at Close.
	h1 := bsTestHost(t)
	cfg := bsConfig(t)
	cfg = append(cfg, WithStatic(bsP2PAddrs(t, seed)...))
	cfg = append(cfg, WithCacheFile(file))
	b1 := bsStart(t, h1, cfg)
	bsWaitJoined(t, b1)
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), seed.ID().String()) {
		t.Fatalf("cache %s lacks the seed: %s", file, data)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(m) > 0 {
		t.Errorf("temporary files left: %v", m)
	}

	// Second run, a new host with mDNS off and no static address: the
	// cache alone brings it in.
	h2 := bsTestHost(t)
	cfg2 := bsConfig(t)
	cfg2 = append(cfg2, WithCacheFile(file))
	b2 := bsStart(t, h2, cfg2)
	bsWaitJoined(t, b2)
	if got := b2.Source(); got != SourceCache {
		t.Errorf("Source() = %q, want %q", got, SourceCache)
	}
}

func TestBootstrapCorruptCache(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":      "{not json",
		"wrong domain": `{"version":1,"domain":"can","peers":[]}`,
		"bad entries":  `{"version":1,"domain":"pastry","peers":[{"id":"x","addrs":["nope"]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "peers.json")
			if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			seed := bsTestHost(t)
			cfg := bsConfig(t)
			cfg = append(cfg, WithCacheFile(file))
			cfg = append(cfg, WithStatic(bsP2PAddrs(t, seed)...))
			b := bsStart(t, bsTestHost(t), cfg)
			bsWaitJoined(t, b)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			c := NewPeerCache(file, "pastry", "")
			if err := c.Load(); err != nil {
				t.Fatalf("replaced cache does not load: %v", err)
			}
			if got := c.AddrInfos(); len(got) != 1 || got[0].ID != seed.ID() {
				t.Errorf("replaced cache holds %v, want the seed", got)
			}
		})
	}
}

func TestBootstrapWebStation(t *testing.T) {
	seed := bsTestHost(t)
	srv := httptest.NewServer(WebStationHandler("pastry", func() []peer.AddrInfo {
		return []peer.AddrInfo{{ID: seed.ID(), Addrs: seed.Addrs()}}
	}))
	t.Cleanup(srv.Close)

	cfg := bsConfig(t)
	cfg = append(cfg, WithWebStations(srv.URL+"/peers"))
	cfg = append(cfg, WithHTTPClient(srv.Client()))
	b := bsStart(t, bsTestHost(t), cfg)
	bsWaitJoined(t, b)
	if got := b.Source(); got != SourceWeb {
		t.Errorf("Source() = %q, want %q", got, SourceWeb)
	}
}

func TestBootstrapOrderPrefersCache(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "peers.json")
	cached, static := bsTestHost(t), bsTestHost(t)
	c := NewPeerCache(file, "pastry", "")
	c.Observe([]peer.AddrInfo{{ID: cached.ID(), Addrs: cached.Addrs()}}, time.Now())
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	cfg := bsConfig(t)
	cfg = append(cfg, WithCacheFile(file))
	cfg = append(cfg, WithStatic(bsP2PAddrs(t, static)...))
	b := bsStart(t, bsTestHost(t), cfg)
	bsWaitJoined(t, b)
	if got := b.Source(); got != SourceCache {
		t.Errorf("Source() = %q, want %q", got, SourceCache)
	}
}

func TestBootstrapConfigErrors(t *testing.T) {
	h := bsTestHost(t)
	noID := ma.StringCast("/ip4/127.0.0.1/tcp/4001")
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string // what the error names
		overlay string
		opt     Option
	}{
		{"overlay", "", nil},
		{"overlay", "Bad Domain", nil},
		{"WithStatic[0]", "pastry", WithStatic(noID)},
		{"WithStatic[1]", "pastry", WithStatic(bsP2PAddrs(t, h)[0], nil)},
		{"WithCacheFile", "pastry", WithCacheFile("/nonexistent-dir/x/peers.json")},
		{"WithCacheFile", "pastry", WithCacheFile(filepath.Join(file, "peers.json"))},
		{"WithCacheFile", "pastry", WithCacheFile(t.TempDir())},
		{"WithWebStations[0]", "pastry", WithWebStations("ftp://example.org/x")},
		{"WithWebStations[0]", "pastry", WithWebStations("http://")},
		{"WithWebStations[0]", "pastry", WithWebStations("http://[::1")},
		{"WithBackoff", "pastry", WithBackoff(-1, time.Second)},
		{"WithBackoff", "pastry", WithBackoff(time.Second, time.Millisecond)},
		{"WithDialTimeout", "pastry", WithDialTimeout(-time.Second)},
		{"WithCacheInterval", "pastry", WithCacheInterval(-time.Second)},
		{"WithClock", "pastry", WithClock(nil)},
	} {
		var opts []Option
		if tc.opt != nil {
			opts = append(opts, tc.opt)
		}
		_, err := New(h, tc.overlay, opts...)
		if !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: err = %v, want ErrBadConfig", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), ": "+tc.name+":") {
			t.Errorf("%s: error %q does not name the option", tc.name, err)
		}
	}
	if _, err := New(nil, "pastry", WithMDNS()); !errors.Is(err, ErrBadConfig) {
		t.Errorf("nil host: err = %v", err)
	}
	if _, err := New(h, "pastry", WithMDNS()); err != nil {
		t.Errorf("default config: %v", err)
	}
}

func TestBootstrapCloseWithoutStart(t *testing.T) {
	b, err := New(bsTestHost(t), "pastry", bsConfig(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}

func TestFetchWebStationErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"domain":"pastry","peers":["`))
		_, _ = w.Write([]byte(strings.Repeat("a", WebStationMaxBody)))
		_, _ = w.Write([]byte(`"]}`))
	})
	mux.HandleFunc("/other", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"domain":"can","peers":[]}`))
	})
	mux.HandleFunc("/404", http.NotFound)
	mux.HandleFunc("/junk", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`<html>`)) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for _, p := range []string{"/big", "/other", "/404", "/junk"} {
		if _, err := FetchWebStation(context.Background(), srv.Client(), srv.URL+p, "pastry"); !errors.Is(err, ErrWebStation) {
			t.Errorf("%s: err = %v, want ErrWebStation", p, err)
		}
	}
	// Unparsable entries are skipped.
	h := bsTestHost(t)
	good := bsP2PAddrs(t, h)[0].String()
	mux.HandleFunc("/mixed", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"domain":"pastry","peers":["junk","/ip4/1.2.3.4/tcp/1","` + good + `"]}`))
	})
	infos, err := FetchWebStation(context.Background(), srv.Client(), srv.URL+"/mixed", "pastry")
	if err != nil || len(infos) != 1 || infos[0].ID != h.ID() {
		t.Errorf("mixed: %v, %v", infos, err)
	}
	// POST is refused by the handler.
	rec := httptest.NewRecorder()
	WebStationHandler("pastry", func() []peer.AddrInfo { return nil }).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

func TestMDNSServiceName(t *testing.T) {
	a, b := MDNSServiceName("pastry"), MDNSServiceName("can")
	if a == b {
		t.Fatal("same service name for two domains")
	}
	long := MDNSServiceName(strings.Repeat("a", 200) + ".example.org")
	for _, s := range []string{a, b, long} {
		label, proto, ok := strings.Cut(s, ".")
		if !ok || proto != "_udp" || !strings.HasPrefix(label, "_hs-") || len(label)-1 > 15 {
			t.Errorf("bad service name %q", s)
		}
	}
	if a != MDNSServiceName("pastry") {
		t.Error("not deterministic")
	}
}

func TestPeerCacheLimits(t *testing.T) {
	c := NewPeerCache(filepath.Join(t.TempDir(), "p.json"), "pastry", "")
	now := time.Now()
	var infos []peer.AddrInfo
	for i := 0; i < PeerCacheMaxPeers+10; i++ {
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}})
	}
	c.Observe(infos, now)
	if n := len(c.AddrInfos()); n != PeerCacheMaxPeers {
		t.Errorf("%d peers kept, want %d", n, PeerCacheMaxPeers)
	}
	c.Observe(nil, now.Add(PeerCacheMaxAge+time.Hour))
	if n := len(c.AddrInfos()); n != 0 {
		t.Errorf("%d stale peers kept", n)
	}
}

// TestBootstrapCacheSavedWhileRunning: the cache is written periodically,
// not only at Close.
func TestBootstrapCacheSavedWhileRunning(t *testing.T) {
	file := filepath.Join(t.TempDir(), "peers.json")
	seed := bsTestHost(t)
	cfg := bsConfig(t)
	cfg = append(cfg, WithStatic(bsP2PAddrs(t, seed)...))
	cfg = append(cfg, WithCacheFile(file))
	cfg = append(cfg, WithCacheInterval(50*time.Millisecond))
	b := bsStart(t, bsTestHost(t), cfg)
	bsWaitJoined(t, b)
	waitFor(t, 10*time.Second, "the cache written while running", func() bool {
		data, err := os.ReadFile(file)
		return err == nil && strings.Contains(string(data), seed.ID().String())
	})
}

// TestBootstrapTried: TriedCh closes after the first round, also when it
// failed (a node alone for now), and on joining.
func TestBootstrapTried(t *testing.T) {
	dead := bsTestHost(t)
	deadAddrs := bsP2PAddrs(t, dead)
	_ = dead.Close()
	cfg := bsConfig(t)
	cfg = append(cfg, WithStatic(deadAddrs...))
	cfg = append(cfg, WithDialTimeout(time.Second))
	b := bsStart(t, bsTestHost(t), cfg)
	select {
	case <-b.Tried():
	case <-time.After(10 * time.Second):
		t.Fatal("TriedCh not closed after a failed round")
	}
	select {
	case <-b.Joined():
		t.Fatal("joined a dead peer")
	default:
	}
	seed := bsTestHost(t)
	cfg = bsConfig(t)
	cfg = append(cfg, WithStatic(bsP2PAddrs(t, seed)...))
	b = bsStart(t, bsTestHost(t), cfg)
	bsWaitJoined(t, b)
	select {
	case <-b.Tried():
	case <-time.After(10 * time.Second):
		t.Fatal("TriedCh not closed after joining")
	}
}
