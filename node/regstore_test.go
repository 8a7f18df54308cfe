package node

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipua"
)

// TestRegistrationsInDataDir: a node with a data directory keeps its SIP registrations in
// RegistrationsFile; started again from it, it serves and republishes them at once.
func TestRegistrationsInDataDir(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Domain: "pastry", DataDir: dir, ListenAddrs: loopback, Logger: quiet,
		SIP:       &SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Election:  ElectionConfig{Disable: true},
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipua.NewUA("sip:bob@bupt.pastry", n.Bridge().UDPAddr(), sipua.WithUALogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	if _, err := ua.Register(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the registrations file", func() error {
		_, err := os.Stat(filepath.Join(dir, RegistrationsFile))
		return err
	})
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n, err = New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	eventually(t, 5*time.Second, "bob's binding republished", func() error {
		for _, b := range n.locator.registrations() {
			if b.AOR == "sip:bob@bupt.pastry" && len(b.Contacts) == 1 {
				return nil
			}
		}
		return os.ErrNotExist
	})
}
