package sipbridge

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Ending the callee's leg when the hop towards the caller is lost.
//
// A node relaying an INVITE from another node (the caller's node, or a domain's proxy) to
// its next hop holds the callee's leg. When the node loses the node it got the INVITE from
// (every connection to it gone, or a provisional answer to it lost, and a new connection
// cannot be made within peerRecheck), nobody is left to answer the callee: the node
// cancels the INVITE downstream as if the caller had, so the phone stops ringing. When the
// callee's 2xx cannot be sent back at all, the node acknowledges it and hangs the call up
// (ACK, then BYE), so that no phone is left off-hook with nobody on the line,
// retransmitting its 2xx.

// peerRecheck bounds the attempt to reconnect to a peer whose last connection closed
// before its transactions are given up.
const peerRecheck = 2 * time.Second

// watchPeers watches the host's connections: losing the last one to a peer with
// transactions in progress makes the bridge check the peer (checkPeer). It returns the
// function that stops watching.
func (b *Bridge) watchPeers() func() {
	nb := &network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		p := c.RemotePeer()
		if b.ctx.Err() != nil || !b.txl.hasPeer(p) {
			return
		}
		b.recheckPeer(p)
	}}
	b.h.Network().Notify(nb)
	return func() { b.h.Network().StopNotify(nb) }
}

// peerChecks holds the peers being checked (checkPeer), so that a burst of failures
// towards one peer (its connections closing, the provisional answers of its calls that
// could not be sent) runs one check at a time: a failure during a check asks for one more.
type peerChecks struct {
	mu sync.Mutex
	m  map[peer.ID]bool // peer → another check asked for
}

// responseLost counts a provisional answer that could not be sent to p and checks p. It
// does not end the answer's transaction: the call goes on while p can be reached, and its
// callee's leg is cancelled (peerLost) when p cannot.
func (b *Bridge) responseLost(p peer.ID) {
	b.lim.stats.responsesLost.Add(1)
	b.recheckPeer(p)
}

// recheckPeer checks p on a goroutine of its own (checkPeer), or once more after the
// check under way.
func (b *Bridge) recheckPeer(p peer.ID) {
	c := &b.checks
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, busy := c.m[p]; busy {
		c.m[p] = true
		return
	}
	if c.m == nil {
		c.m = make(map[peer.ID]bool)
	}
	c.m[p] = false
	again := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.m[p] {
			c.m[p] = false
			return true
		}
		delete(c.m, p)
		return false
	}
	if !b.spawn(func() {
		for {
			b.checkPeer(p)
			if !again() {
				return
			}
		}
	}) {
		delete(c.m, p)
	}
}

// checkPeer gives p's transactions up unless the host is, or can get, connected to p again.
func (b *Bridge) checkPeer(p peer.ID) {
	if b.h.Network().Connectedness(p) == network.Connected {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, peerRecheck)
	defer cancel()
	ctx = network.WithAllowLimitedConn(ctx, "hiersip-sip")
	err := b.h.Connect(ctx, peer.AddrInfo{ID: p})
	if err == nil || b.ctx.Err() != nil {
		return
	}
	b.peerLost(p, fmt.Errorf("%w: %s: disconnected: %v", ErrLinkDown, p, err))
}

// peerLost fails this node's requests to p and treats p's requests in progress here as
// cancelled by p: their relays cancel downstream (CANCEL to the callee).
func (b *Bridge) peerLost(p peer.ID, err error) {
	b.txl.failPeer(p, err)
	n := 0
	for _, st := range b.txl.serversOf(p) {
		count := func() {} // counted before the CANCEL can leave
		if st.method == sip.INVITE {
			count = func() { n++; b.lim.stats.calleeLegsEnded.Add(1) }
		}
		st.cancelled(nil, count)
	}
	if n > 0 {
		b.log.Info("lost the node calls came from: cancelling their callee legs", "peer", p, "calls", n, "err", err)
	}
}

// endCalleeLeg acknowledges and hangs up the dialog of res, a 2xx to inv that could not be
// sent towards the caller: ACK and BYE go to the callee as the caller's side would send
// them — to a local UA's contact directly, or to the callee's node (the topmost
// Record-Route, which the callee's node added) over libp2p. h is the hop inv went to.
func (b *Bridge) endCalleeLeg(inv *sip.Request, h hop, res *sip.Response) {
	target := inv.Recipient
	if c := res.Contact(); c != nil {
		target = c.Address
	}
	switch {
	case h.uri != nil:
		h = hop{uri: target.Clone(), dst: h.dst, dstTransport: h.dstTransport}
	case h.peer != "":
		h = hop{peer: h.peer}
		if rr := res.RecordRoute(); rr != nil {
			if id, ok := rr.Address.UriParams.Get(nodeParam); ok {
				if pid, err := peer.Decode(id); err == nil && pid != b.self {
					h.peer = pid
				}
			}
		}
	default:
		return
	}
	build := func(m sip.RequestMethod, seq uint32) *sip.Request {
		r := sip.NewRequest(m, target)
		r.AppendHeader(sip.HeaderClone(inv.From()))
		r.AppendHeader(sip.HeaderClone(res.To()))
		r.AppendHeader(sip.HeaderClone(inv.CallID()))
		r.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: m})
		mf := sip.MaxForwardsHeader(70)
		r.AppendHeader(&mf)
		if h.peer != "" {
			if rr := res.RecordRoute(); rr != nil {
				r.AppendHeader(&sip.RouteHeader{Address: *rr.Address.Clone()})
			}
		}
		r.SetBody(nil)
		b.prepare(&forwarding{req: r, fwd: r, hop: h})
		return r
	}
	seq := inv.CSeq().SeqNo
	ack, bye := build(sip.ACK, seq), build(sip.BYE, seq+1)
	b.lim.stats.calleeLegsEnded.Add(1)
	b.log.Info("hanging up a call answered after its caller's side was lost", "call", inv.CallID().Value(),
		"status", res.StatusCode, "to-peer", h.peer)
	b.spawn(func() {
		ctx, cancel := context.WithTimeout(b.ctx, nonInviteTimeout)
		defer cancel()
		p, err := b.pathTo(h)
		if err != nil {
			b.log.Debug("ending the callee's leg failed", "err", err)
			return
		}
		if err := b.send(p, ack, nil); err != nil {
			b.log.Debug("ACK to the callee failed", "err", err)
		}
		tx, err := b.txl.request(p, bye)
		if err != nil {
			b.log.Debug("BYE to the callee failed", "err", err)
			return
		}
		defer tx.Terminate()
		for {
			select {
			case r := <-tx.Responses():
				if r.StatusCode >= 200 {
					b.log.Debug("callee hung up", "call", inv.CallID().Value(), "status", strconv.Itoa(r.StatusCode))
					return
				}
			case <-tx.Done():
				return
			case <-ctx.Done():
				return
			}
		}
	})
}
