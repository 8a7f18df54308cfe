package bootstrap

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func FuzzPeerCacheLoad(f *testing.F) {
	now := time.Now().UTC().Format(time.RFC3339)
	f.Add([]byte(`{"version":1,"domain":"pastry","peers":[{"id":"12D3KooWLeVahpSN4m42zDhGUxLa8vV6iLX6CqzoaKKLGMSujncE","addrs":["/ip4/10.0.0.1/tcp/4001","/ip4/10.0.0.1/udp/4001/quic-v1"],"seen":"` + now + `"}]}`))
	f.Add([]byte(`{"version":1,"domain":"pastry","peers":[]}`))
	f.Add([]byte(`{not json`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		file := filepath.Join(dir, "peers.json")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c := NewPeerCache(file, "pastry", "")
		if err := c.Load(); err != nil {
			if len(c.AddrInfos()) != 0 {
				t.Fatal("a failed Load left peers in the cache")
			}
			return
		}
		got := c.AddrInfos()
		if len(got) > PeerCacheMaxPeers {
			t.Fatalf("%d peers loaded, limit %d", len(got), PeerCacheMaxPeers)
		}
		if len(got) == 0 {
			return
		}
		if err := c.Save(); err != nil {
			t.Fatal(err)
		}
		c2 := NewPeerCache(file, "pastry", "")
		if err := c2.Load(); err != nil {
			t.Fatalf("saved cache does not load: %v", err)
		}
		if again := c2.AddrInfos(); !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip changed the cache:\n%v\n%v", got, again)
		}
	})
}
