package p2pnet

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// NewStream opens a stream of proto to p, over a relayed (limited) connection
// too (reason names the user, as network.WithAllowLimitedConn wants), dialing
// for at most dialTimeout when no connection to p exists.
//
// With no connection, libp2p's dial can hang on an address that no longer
// works (a relayed circuit just cut) while the peer dials back, and the dial
// does not notice that connection. So the dial stops as soon as any
// connection to p opens, and the stream is opened on that one at once: after
// a cut, a call's audio and SIP resume in milliseconds instead of after
// dialTimeout.
func NewStream(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID, reason string, dialTimeout time.Duration) (network.Stream, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	nw := h.Network()
	var connected atomic.Bool
	if nw.Connectedness(p) != network.Connected {
		nb := &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() == p {
				connected.Store(true)
				cancel()
			}
		}}
		nw.Notify(nb)
		defer nw.StopNotify(nb)
	}
	s, err := h.NewStream(network.WithAllowLimitedConn(dctx, reason), p, proto)
	if err != nil && connected.Load() && ctx.Err() == nil {
		nctx, ncancel := context.WithTimeout(ctx, dialTimeout)
		defer ncancel()
		s, err = h.NewStream(network.WithNoDial(network.WithAllowLimitedConn(nctx, reason), reason), p, proto)
	}
	return s, err
}
