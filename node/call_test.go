package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipbridge"
)

// withSIP starts the named domains with SIP bridges on loopback.
func startCallDomains(t *testing.T, n int, names ...string) map[string][]*Node {
	t.Helper()
	ctx := context.Background()
	var seeds []string
	out := map[string][]*Node{}
	for _, d := range names {
		var first string
		for i := range n {
			cfg := Config{Domain: d, ListenAddrs: loopback, Logger: quiet,
				SIP:       &SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
				Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
				Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: seeds}}
			if i == 0 {
				cfg.GlobalSeed = true
			} else {
				cfg.Bootstrap.Peers = []string{first}
			}
			nd, err := New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nd.Close() })
			if i == 0 {
				first = p2pAddr(t, nd.Host())
				seeds = append(seeds, first)
			}
			out[d] = append(out[d], nd)
		}
	}
	for _, d := range names {
		eventually(t, 30*time.Second, d+" elects a proxy", func() error {
			_, err := serving(out[d], min(2, n-1))
			return err
		})
	}
	return out
}

func newUA(t *testing.T, aor string, at *Node) *sipbridge.UA {
	t.Helper()
	ua, err := sipbridge.NewUA(aor, at.Bridge().UDPAddr(), sipbridge.WithUALogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ua.Register(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	return ua
}

func TestInterDomainCall(t *testing.T) {
	ds := startCallDomains(t, 3, "pastry", "can")
	// Users on nodes that are not proxies, where possible.
	pick := func(nodes []*Node) *Node {
		for _, nd := range nodes {
			if !nd.IsProxy() {
				return nd
			}
		}
		return nodes[0]
	}
	bob := newUA(t, "sip:bob@bupt.pastry", pick(ds["pastry"]))
	alice := newUA(t, "sip:alice@pku.can", pick(ds["can"]))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var call *sipbridge.Call
	eventually(t, 20*time.Second, "bob calls alice across domains", func() (err error) {
		call, err = bob.Call(ctx, "sip:alice@pku.can")
		return err
	})
	if _, err := bob.Message(ctx, "sip:alice@pku.can", "hello from pastry"); err != nil {
		t.Fatalf("MESSAGE: %v", err)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	for _, e := range bob.Ladder() {
		t.Log("bob  ", e)
	}
	for _, e := range alice.Ladder() {
		t.Log("alice", e)
	}
	_, err := bob.Call(ctx, "sip:nobody@pku.can")
	var cf *sipbridge.ErrCallFailed
	if !errors.As(err, &cf) || cf.Response.StatusCode != 404 {
		t.Fatalf("call to an unknown user of can: %v, want 404", err)
	}
	_, err = bob.Call(ctx, "sip:carol@x.chord")
	if !errors.As(err, &cf) || cf.Response.StatusCode != 404 {
		t.Fatalf("call to an unknown domain: %v, want 404", err)
	}
	t.Logf("unknown domain: %d %s", cf.Response.StatusCode, cf.Response.Reason)
}
