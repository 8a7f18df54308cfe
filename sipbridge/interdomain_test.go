package sipbridge

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipua"
)

// TestInterDomainHook routes alice@pastry → bob@can through an intermediate node: node 1
// (pastry) hands the call to node 2 (pastry's proxy), which forwards it over libp2p to node 3
// (the can node serving bob). The proxy is not record-routed: BYE goes node 1 → node 3.
func TestInterDomainHook(t *testing.T) {
	pastry, can := newMemDir(), newMemDir()
	// the resolvers run on the nodes' goroutines, which see the nodes through sockets only:
	// the race detector wants them published with synchronisation
	var n2p, n3p atomic.Pointer[testNode]
	toProxy := func(ctx context.Context, a domains.AOR) (peer.AddrInfo, error) {
		n2 := n2p.Load()
		return peer.AddrInfo{ID: n2.h.ID(), Addrs: n2.h.Addrs()}, nil
	}
	toCan := func(ctx context.Context, a domains.AOR) (peer.AddrInfo, error) {
		if !a.InDomain("can") {
			return peer.AddrInfo{}, domains.ErrNotFound
		}
		n3 := n3p.Load()
		return peer.AddrInfo{ID: n3.h.ID(), Addrs: n3.h.Addrs()}, nil
	}
	n1 := newTestNode(t, pastry, "pastry", WithInterDomain(toProxy))
	n2 := newTestNode(t, pastry, "pastry", WithInterDomain(toCan))
	n3 := newTestNode(t, can, "can")
	n2p.Store(n2)
	n3p.Store(n3)
	connect(t, n1, n2)
	connect(t, n2, n3)
	// no n1–n3 connection: node 1 learns node 3's addresses from its Hiersip-Node header
	ring := sipua.WithUAAnswer(sipua.AnswerAuto, 10*time.Millisecond)
	alice := newTestUA(t, "sip:alice@pastry", n1, ring)
	bob := newTestUA(t, "sip:bob@can", n3, ring)
	ctx := ctxT(t, 20*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	call, err := alice.Call(ctx, "sip:bob@can")
	if err != nil {
		t.Fatal(err)
	}
	rr := call.Responses[len(call.Responses)-1].GetHeaders("Record-Route")
	if len(rr) != 2 {
		t.Fatalf("Record-Route %v: want the two end nodes only", rr)
	}
	var in *sipua.Call
	select {
	case in = <-bob.Incoming():
	case <-ctx.Done():
		t.Fatal("no call at bob")
	}
	if in.Invite.GetHeader(headerNodeAddrs) != nil || call.Responses[len(call.Responses)-1].GetHeader(headerNodeAddrs) != nil {
		t.Fatal("Hiersip-Node header reached a UA")
	}
	lookups := pastry.lookupCount() + can.lookupCount()
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.Done():
	case <-ctx.Done():
		t.Fatal("BYE not delivered")
	}
	if n := pastry.lookupCount() + can.lookupCount(); n != lookups {
		t.Fatalf("BYE needed %d lookups", n-lookups)
	}
	if n1.h.Network().Connectedness(n3.h.ID()) != network.Connected {
		t.Fatal("BYE did not go node 1 → node 3 directly")
	}
	// unknown domain through the proxy: 404
	_, err = alice.Call(ctx, "sip:x@chord")
	if cf, ok := err.(*sipua.ErrCallFailed); !ok || cf.Response.StatusCode != 404 {
		t.Fatalf("unknown domain: %v", err)
	}
}
