package node

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestNewBusySIPPort: a node whose SIP port is taken (a second node on one
// machine) fails to start with an error naming the setting and the cause; it
// does not panic and leaves its ports free.
func TestNewBusySIPPort(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	n, err := New(context.Background(), Config{
		Domain: "pastry", ListenAddrs: loopback, Logger: quiet,
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
		SIP:       &SIPConfig{UDP: busy.LocalAddr().String(), TCP: "127.0.0.1:0"},
	})
	if err == nil {
		n.Close()
		t.Fatal("New on a busy SIP port succeeded")
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "sip.udp" || !errors.Is(err, syscall.EADDRINUSE) ||
		!strings.Contains(err.Error(), busy.LocalAddr().String()) {
		t.Fatalf("error %q: want a ConfigError of sip.udp naming %s, address in use", err, busy.LocalAddr())
	}
}

// TestDataDirLock: a second node on a data directory in use is refused,
// naming the holder's process ID, and the first one's files are untouched;
// once the first closes, the directory can be used again with the same
// identity.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cfg := Config{Domain: "pastry", DataDir: dir, ListenAddrs: loopback, Logger: quiet,
		Election:  ElectionConfig{Disable: true},
		Bootstrap: BootstrapConfig{DisableMDNS: true}}
	first, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(os.Getpid())
	if b, err := os.ReadFile(filepath.Join(dir, LockFile)); err != nil || strings.TrimSpace(string(b)) != pid {
		t.Fatalf("lock file: %q, %v; want the PID %s", b, err, pid)
	}
	second, err := New(ctx, cfg)
	if err == nil {
		second.Close()
		first.Close()
		t.Fatal("a second node started on a locked data directory")
	}
	if !errors.Is(err, ErrDataDirLocked) || !strings.Contains(err.Error(), "process "+pid) {
		t.Fatalf("error %q: want ErrDataDirLocked naming process %s", err, pid)
	}
	h := newTestHost(t)
	if n, err := NewWithHost(ctx, h, cfg); !errors.Is(err, ErrDataDirLocked) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("NewWithHost on a locked data directory: %v", err)
	}
	id := first.ID()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	defer again.Close()
	if again.ID() != id {
		t.Fatalf("identity changed: %s, then %s", id, again.ID())
	}
}
