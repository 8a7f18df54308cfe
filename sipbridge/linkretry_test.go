package sipbridge

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/sipua"
)

// dialGate is a connection gater that refuses the host's dials to one peer while shut.
type dialGate struct {
	to   atomic.Pointer[peer.ID]
	shut atomic.Bool
}

func (g *dialGate) InterceptPeerDial(p peer.ID) bool {
	to := g.to.Load()
	return !g.shut.Load() || to == nil || *to != p
}
func (g *dialGate) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (g *dialGate) InterceptAccept(network.ConnMultiaddrs) bool  { return true }
func (g *dialGate) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (g *dialGate) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// TestByeAcrossALinkCut: alice@n1 and bob@n2 are in a call; the connection between their
// nodes drops and n1 cannot dial n2 for a moment (a relayed connection cut at its limits,
// in the field). alice hangs up in that gap. n1 resends the BYE when the link is back, and
// bob's call ends; before, alice got 480 and bob stayed in the call.
func TestByeAcrossALinkCut(t *testing.T) {
	dir := newMemDir()
	gate := &dialGate{}
	n1 := newTestNodeHost(t, []libp2p.Option{libp2p.ConnectionGater(gate)}, dir, "pastry")
	n2 := newTestNode(t, dir, "pastry")
	id2 := n2.h.ID()
	gate.to.Store(&id2)
	connect(t, n1, n2)
	alice := newTestUA(t, "sip:alice@pastry", n1)
	bob := newTestUA(t, "sip:bob@pastry", n2, sipua.WithUAAnswer(sipua.AnswerAuto, 0))
	ctx := ctxT(t, 30*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	call, err := alice.Call(ctx, "sip:bob@pastry")
	if err != nil {
		t.Fatal(err)
	}
	var in *sipua.Call
	select {
	case in = <-bob.Incoming():
	case <-ctx.Done():
		t.Fatal("bob never saw the call")
	}
	gate.shut.Store(true)
	_ = n1.h.Network().ClosePeer(id2)
	eventually(t, 10*time.Second, "the nodes disconnected", func() bool {
		return n1.h.Network().Connectedness(id2) != network.Connected
	})
	hung := make(chan error, 1)
	go func() { hung <- call.Hangup(ctx) }()
	eventually(t, 10*time.Second, "n1 resending the BYE", func() bool { return n1.b.Stats().RequestsResent >= 1 })
	gate.shut.Store(false) // the link can be had again
	select {
	case <-in.Done():
	case <-ctx.Done():
		t.Fatal("the BYE never reached bob")
	}
	if err := <-hung; err != nil {
		t.Errorf("alice's BYE: %v", err)
	}
}
