package node

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// rawSIPPeer is a libp2p host that speaks /hiersip/sip/1.0.0 by hand: it
// sends requests and collects the status lines of the responses it gets.
type rawSIPPeer struct {
	id     peer.ID
	status chan string
}

func newRawSIPPeer(t *testing.T) (*rawSIPPeer, func(ctx context.Context, to peer.AddrInfo, msg string) error) {
	t.Helper()
	h := newTestHost(t)
	r := &rawSIPPeer{id: h.ID(), status: make(chan string, 16)}
	h.SetStreamHandler(sipbridge.ProtocolID, func(s network.Stream) {
		defer s.Close()
		sc := bufio.NewScanner(s)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "SIP/2.0 ") {
				r.status <- line
			}
		}
	})
	// A peer of the global overlay only: it joins the global DHT, no domain.
	g, err := domains.NewGlobalOverlay(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	send := func(ctx context.Context, to peer.AddrInfo, msg string) error {
		if err := h.Connect(ctx, to); err != nil {
			return err
		}
		s, err := h.NewStream(ctx, to.ID, sipbridge.ProtocolID)
		if err != nil {
			return err
		}
		_, err = s.Write([]byte(msg))
		return err
	}
	return r, send
}

func rawMessage(from peer.ID, target, callID string) string {
	return fmt.Sprintf("MESSAGE %s SIP/2.0\r\n"+
		"Via: SIP/2.0/P2P %s;branch=z9hG4bK%s\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:mallory@evil>;tag=m1\r\n"+
		"To: <%s>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 MESSAGE\r\n"+
		"Content-Type: text/plain\r\n"+
		"Content-Length: 2\r\n\r\nhi", target, from, callID, target, callID)
}

// TestProxyRelaysOnlyForMembers: a peer that is only in the global overlay
// asks pastry's proxy to relay a request to chord and gets 403, while a
// member of pastry reaches chord's user through the same proxy, and the
// outsider may still reach pastry's own users through it.
func TestProxyRelaysOnlyForMembers(t *testing.T) {
	ds := startCallDomains(t, nil, 2, "pastry", "chord")
	proxy := proxyOf(t, ds["pastry"])
	bob := newUA(t, "sip:bob@chord", member(ds["chord"]))
	alice := newUA(t, "sip:alice@pastry", member(ds["pastry"]))
	_ = bob

	// A member's message to chord goes through.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eventually(t, 30*time.Second, "alice's message to bob", func() error {
		_, err := alice.Message(ctx, "sip:bob@chord", "hello")
		return err
	})

	out, send := newRawSIPPeer(t)
	if proxy.isMember(out.id) {
		t.Fatal("a global-only peer counts as a member of pastry")
	}
	if err := send(ctx, peer.AddrInfo{ID: proxy.ID(), Addrs: proxy.Host().Addrs()}, rawMessage(out.id, "sip:bob@chord", "evil-1")); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-out.status:
		if !strings.HasPrefix(st, "SIP/2.0 403 ") || !strings.Contains(st, "members of domain pastry") {
			t.Fatalf("relay through pastry's proxy: %q, want 403", st)
		}
		t.Logf("outsider got %q", st)
	case <-ctx.Done():
		t.Fatal("no answer to the outsider")
	}
	// A request for pastry's own user is not relaying: it is served (here
	// 200 from alice's UA), as requests of other domains' proxies are.
	if err := send(ctx, peer.AddrInfo{ID: proxy.ID(), Addrs: proxy.Host().Addrs()}, rawMessage(out.id, "sip:alice@pastry", "evil-2")); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-out.status:
		if strings.HasPrefix(st, "SIP/2.0 403 ") {
			t.Fatalf("request for a user of pastry: %q", st)
		}
		t.Logf("outsider to alice got %q", st)
	case <-ctx.Done():
		t.Fatal("no answer to the outsider")
	}
}
