package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipua"
)

// lockedBuffer is a bytes.Buffer for a logger on many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// duplicateKeys returns the keys that occur more than once in a JSON object.
func duplicateKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	seen := map[string]bool{}
	var dups []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		if seen[key] {
			dups = append(dups, key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return dups, nil
}

// TestLogsOneKeyOnce runs two nodes of a domain at debug level through a
// registration and a call, and checks every log record: no key twice (the
// node, its overlays, bootstrapper, election and SIP bridge each add keys of
// their own), and peer IDs in full, never peer.ID's "<peer.ID 12*…>" form.
func TestLogsOneKeyOnce(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	cfg := Config{Domain: "pastry", ListenAddrs: loopback, Logger: log,
		SIP:       &SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
		Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true}}
	a, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	cfg.Bootstrap.Peers = []string{p2pAddr(t, a.Host())}
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	waitJoined(t, a)
	waitJoined(t, b)
	_ = newUA(t, "sip:alice@pastry", a)
	bob := newUA(t, "sip:bob@pastry", b)
	c := call(t, bob, "sip:alice@pastry")
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Hangup(hctx); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()

	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	sc.Buffer(nil, 1<<20)
	records, withNode := 0, 0
	for sc.Scan() {
		line := sc.Text()
		records++
		dups, err := duplicateKeys(line)
		if err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		if len(dups) > 0 {
			t.Errorf("keys %v repeated in %s", dups, line)
		}
		if strings.Contains(line, "<peer.ID") {
			t.Errorf("short peer ID in %s", line)
		}
		var rec struct{ Node string }
		_ = json.Unmarshal([]byte(line), &rec)
		if rec.Node == a.ID().String() || rec.Node == b.ID().String() {
			withNode++
		}
	}
	if records < 10 || withNode < records/2 {
		t.Fatalf("%d log records, %d naming their node in full: too few to judge", records, withNode)
	}
	t.Logf("%d records checked", records)
}

// TestLibraryLogsNowhereByDefault: a node, a bridge and a UA built without a
// logger write nothing to the process's default logger.
func TestLibraryLogsNowhereByDefault(t *testing.T) {
	var buf lockedBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	ctx := context.Background()
	n, err := New(ctx, Config{Domain: "pastry", ListenAddrs: loopback,
		SIP: &SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: []string{
			// Unreachable: the bootstrapper has something to log about.
			"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWEAzSLN9VGZQ8zrrameNnsRXAfPPcFdVqpx1NzxFsFJci"}},
		Global: BootstrapConfig{DisableMDNS: true, DisableCache: true}})
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipua.NewUA("sip:bob@pastry", n.Bridge().UDPAddr())
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := ua.Register(rctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := ua.Message(rctx, "sip:nobody@pastry", "hello"); err != nil {
		t.Fatal(err)
	}
	ua.Close()
	n.Close()
	if s := buf.String(); s != "" {
		t.Fatalf("the library logged to slog.Default:\n%s", s)
	}
}
