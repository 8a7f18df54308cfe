package sipbridge

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipua"
)

// laddered reports whether u's ladder holds a message (sent or received) whose first line
// contains s.
func laddered(u *sipua.UA, sent bool, s string) bool {
	for _, e := range u.Ladder() {
		if e.Sent == sent && strings.Contains(e.First, s) {
			return true
		}
	}
	return false
}

// TestProxyKilledWhileCalleeRings: alice@pastry calls bob@can through pastry's proxy (a
// third node); the proxy's host dies while bob rings. The caller gets a failure, and bob's
// node, having lost the node the INVITE came from, cancels the INVITE: bob stops ringing.
func TestProxyKilledWhileCalleeRings(t *testing.T) {
	pastry, can := newMemDir(), newMemDir()
	// the resolvers run on the nodes' goroutines, which see the nodes through sockets only:
	// the race detector wants them published with synchronisation
	var n2p, n3p atomic.Pointer[testNode]
	toProxy := func(ctx context.Context, a domains.AOR) (peer.AddrInfo, error) {
		n2 := n2p.Load()
		return peer.AddrInfo{ID: n2.h.ID(), Addrs: n2.h.Addrs()}, nil
	}
	toCan := func(ctx context.Context, a domains.AOR) (peer.AddrInfo, error) {
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
	alice := newTestUA(t, "sip:alice@pastry", n1)
	bob := newTestUA(t, "sip:bob@can", n3, sipua.WithUAAnswer(sipua.AnswerRingOnly, 0))
	ctx := ctxT(t, 30*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() { _, err := alice.Call(ctx, "sip:bob@can"); result <- err }()
	eventually(t, 10*time.Second, "bob ringing", func() bool { return laddered(bob, true, "180") })
	_ = n2.h.Close() // the proxy dies: its connections go, its bridge never says goodbye
	eventually(t, 10*time.Second, "a CANCEL at bob", func() bool { return laddered(bob, false, "CANCEL") })
	select {
	case err := <-result:
		if err == nil {
			t.Fatal("the call succeeded without its proxy")
		}
		t.Logf("caller: %v", err)
	case <-ctx.Done():
		t.Fatal("the caller never got an answer")
	}
	if n := n3.b.Stats().CalleeLegsEnded; n != 1 {
		t.Errorf("CalleeLegsEnded %d, want 1", n)
	}
}

// TestRingingLostThenPeerGone: a node relays an INVITE from another node to its UA bob,
// and bob's 180 cannot be sent back (the other node takes no stream of the protocol). A
// lost provisional answer ends nothing: the other node is still connected, so bob rings on.
// When that node then goes away, the node cancels the INVITE: bob stops ringing. (Ending
// the transaction on the lost 180 left nothing for the lost peer to cancel: bob rang on.)
func TestRingingLostThenPeerGone(t *testing.T) {
	n := newTestNode(t, newMemDir(), "can")
	bob := newTestUA(t, "sip:bob@can", n, sipua.WithUAAnswer(sipua.AnswerRingOnly, 0))
	ctx := ctxT(t, 30*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	up := newPeerHost(t, n) // no handler of ProtocolID: every answer to it is lost
	s, err := up.NewStream(ctx, n.h.ID(), ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	if _, err := s.Write([]byte(orphanInvite(up.ID(), "ringing-lost"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "bob's 180 lost on its way back", func() bool {
		return laddered(bob, true, "180") && n.b.Stats().ResponsesLost >= 1
	})
	if laddered(bob, false, "CANCEL") {
		t.Fatal("bob cancelled while the caller's node is connected")
	}
	_ = up.Close()
	eventually(t, 10*time.Second, "a CANCEL at bob", func() bool { return laddered(bob, false, "CANCEL") })
	if n := n.b.Stats().CalleeLegsEnded; n != 1 {
		t.Errorf("CalleeLegsEnded %d, want 1", n)
	}
}

// orphanInvite is an INVITE from alice@pastry to bob@can, as node from would send it.
func orphanInvite(from peer.ID, callID string) string {
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	return fmt.Sprintf("INVITE sip:bob@can SIP/2.0\r\nVia: SIP/2.0/P2P %s;branch=z9hG4bK%s\r\nMax-Forwards: 69\r\n"+
		"From: <sip:alice@pastry>;tag=a1\r\nTo: <sip:bob@can>\r\nCall-ID: %s\r\nCSeq: 7 INVITE\r\n"+
		"Contact: <sip:alice@127.0.0.1:9>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		from, callID, callID, len(sdp), sdp)
}

// TestOrphanAnswerHungUp: a node relays an INVITE from another node to its UA bob; the
// other node stays connected but stops taking the node's messages (its stream reset, the
// protocol gone) before bob answers. The node cannot deliver bob's 200, so it acknowledges it
// and sends BYE: bob's call ends instead of retransmitting its 200 to nobody.
func TestOrphanAnswerHungUp(t *testing.T) {
	n := newTestNode(t, newMemDir(), "can")
	bob := newTestUA(t, "sip:bob@can", n, sipua.WithUAAnswer(sipua.AnswerAuto, 500*time.Millisecond))
	ctx := ctxT(t, 30*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	up := newPeerHost(t, n)
	rang := make(chan struct{})
	up.SetStreamHandler(ProtocolID, func(s network.Stream) {
		fr := newFrameReader(s, 1<<20)
		for {
			data, err := fr.next()
			if err != nil {
				return
			}
			if statusOf(data) == 180 {
				up.RemoveStreamHandler(ProtocolID) // nothing more gets through
				_ = s.Reset()
				close(rang)
				return
			}
		}
	})
	s, err := up.NewStream(ctx, n.h.ID(), ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	if _, err := s.Write([]byte(orphanInvite(up.ID(), "orphan-1"))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rang:
	case <-ctx.Done():
		t.Fatal("bob never rang")
	}
	eventually(t, 10*time.Second, "bob's 200 acknowledged and the call hung up (ACK and BYE at bob)", func() bool {
		return laddered(bob, true, "200 OK") && laddered(bob, false, "ACK") && laddered(bob, false, "BYE")
	})
	sent200 := func() (n int) {
		for _, e := range bob.Ladder() {
			if e.Sent && strings.HasPrefix(e.First, "SIP/2.0 200") && strings.HasSuffix(e.CSeq, "INVITE") {
				n++
			}
		}
		return n
	}
	// T1 is 500 ms: without the ACK bob would retransmit its 200 within a second
	if n0 := sent200(); !retransmitsStop(sent200, n0) {
		t.Errorf("bob goes on retransmitting its 200: %v", bob.Ladder())
	}
	if n := n.b.Stats().CalleeLegsEnded; n != 1 {
		t.Errorf("CalleeLegsEnded %d, want 1", n)
	}
}

// retransmitsStop reports whether count stays at n over two of sipgo's retransmission
// intervals (T1, 2·T1).
func retransmitsStop(count func() int, n int) bool {
	deadline := time.Now().Add(1600 * time.Millisecond)
	for time.Now().Before(deadline) {
		if count() != n {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
