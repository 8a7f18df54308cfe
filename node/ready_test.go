package node

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestReadyLoneNode: a node with nothing to bootstrap from is ready for its
// domain at once, reports it in its status, and its users call each other.
// A node whose only peer is dead is ready once it has tried it.
func TestReadyLoneNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := New(ctx, Config{Domain: "pastry", ListenAddrs: loopback, Logger: quiet,
		SIP:       &SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
		Election:  ElectionConfig{Disable: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.WaitReady(ctx, ReadyDomain); err != nil {
		t.Fatal(err)
	}
	s := n.Status()
	if s.Joined || !s.Ready || s.ReadyGlobal {
		t.Fatalf("lone node: joined %v ready %v ready_global %v", s.Joined, s.Ready, s.ReadyGlobal)
	}
	var text strings.Builder
	if err := s.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "calls in pastry (alone: no peer in the domain yet); other domains: not yet") {
		t.Fatalf("status text:\n%s", text.String())
	}
	js, _ := json.Marshal(s)
	if !strings.Contains(string(js), `"ready":true`) {
		t.Fatalf("status JSON: %s", js)
	}
	_ = newUA(t, "sip:alice@pastry", n)
	bob := newUA(t, "sip:bob@pastry", n)
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	c, err := bob.Call(cctx, "sip:alice@pastry") // no retry: ready means ready
	if err != nil {
		t.Fatalf("call on a ready lone node: %v", err)
	}
	_ = c.Hangup(cctx)

	// A dead bootstrap peer: ready after trying it, not before joining.
	dead := newTestHost(t)
	addr := p2pAddr(t, dead)
	dead.Close()
	m, err := New(ctx, Config{Domain: "pastry", ListenAddrs: loopback, Logger: quiet,
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: []string{addr}},
		Election:  ElectionConfig{Disable: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.WaitReady(ctx, ReadyDomain); err != nil {
		t.Fatal(err)
	}
	if m.Status().Joined {
		t.Fatal("joined a dead peer")
	}
	m.Close()
	if err := m.WaitReady(context.Background(), ReadyGlobal); err != ErrClosed {
		t.Fatalf("WaitReady on a closed node: %v", err)
	}
}

// TestReadyGlobal: in two domains with elected proxies, every node becomes
// ready for calls to other domains, and a call placed at once succeeds.
func TestReadyGlobal(t *testing.T) {
	ds := startCallDomains(t, nil, 2, "pastry", "can")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, d := range ds {
		for _, n := range d {
			if err := n.WaitReady(ctx, ReadyGlobal); err != nil {
				t.Fatalf("%s in %s: %v (status %+v)", n.ID(), n.Domain(), err, n.Status())
			}
			if !n.Status().ReadyGlobal {
				t.Fatal("status says not ready")
			}
		}
	}
	_ = newUA(t, "sip:alice@pku.can", member(ds["can"]))
	bob := newUA(t, "sip:bob@bupt.pastry", member(ds["pastry"]))
	c, err := bob.Call(ctx, "sip:alice@pku.can")
	if err != nil {
		t.Fatalf("call when ready: %v", err)
	}
	_ = c.Hangup(ctx)
}
