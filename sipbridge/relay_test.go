package sipbridge

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipua"
)

// TestCallOverRelay: the callee's node has no listen address at all (as behind a NAT) and is
// reachable only through a circuit relay; the call and its BYE still go through, over the
// limited (relayed) connection.
func TestCallOverRelay(t *testing.T) {
	ctx := ctxT(t, 30*time.Second)
	rh, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rh.Close() })
	if _, err := relay.New(rh); err != nil {
		t.Fatal(err)
	}
	relayInfo := peer.AddrInfo{ID: rh.ID(), Addrs: rh.Addrs()}

	dir := newMemDir()
	n1 := newTestNode(t, dir, "pastry")
	hidden, err := libp2p.New(libp2p.NoListenAddrs, libp2p.EnableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hidden.Close() })
	if err := hidden.Connect(ctx, relayInfo); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Reserve(ctx, hidden, relayInfo); err != nil {
		t.Fatal(err)
	}
	circuit, err := ma.NewMultiaddr(rh.Addrs()[0].String() + "/p2p/" + rh.ID().String() + "/p2p-circuit")
	if err != nil {
		t.Fatal(err)
	}
	// the hidden node publishes its relay address only
	loc := &relayLocator{memLocator: &memLocator{dir: dir, domain: "pastry", h: hidden}, addr: circuit}
	b2, err := New(hidden, loc, WithListen("127.0.0.1:0"), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close() })
	n2 := &testNode{h: hidden, loc: loc.memLocator, b: b2}

	ring := sipua.WithUAAnswer(sipua.AnswerAuto, 10*time.Millisecond)
	alice := newTestUA(t, "sip:alice@pastry", n1, ring)
	bob := newTestUA(t, "sip:bob@pastry", n2, ring)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	call, err := alice.Call(ctx, "sip:bob@pastry")
	if err != nil {
		t.Fatalf("call over relay: %v", err)
	}
	limited := false
	for _, c := range n1.h.Network().ConnsToPeer(hidden.ID()) {
		limited = limited || c.Stat().Limited
	}
	if !limited {
		t.Fatalf("expected a relayed (limited) connection to the hidden node, got %v", n1.h.Network().ConnsToPeer(hidden.ID()))
	}
	in := <-bob.Incoming()
	if err := in.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("BYE over relay not delivered")
	}
}

// relayLocator is a memLocator whose bindings carry a relay address.
type relayLocator struct {
	*memLocator
	addr ma.Multiaddr
}

func (l *relayLocator) Register(ctx context.Context, aor domains.AOR, cs []domains.Contact) error {
	if err := l.memLocator.Register(ctx, aor, cs); err != nil {
		return err
	}
	l.dir.mu.Lock()
	l.dir.m[aor.String()].Addrs = []ma.Multiaddr{l.addr}
	l.dir.mu.Unlock()
	return nil
}
