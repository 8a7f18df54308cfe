package sipbridge

import (
	"time"

	"github.com/emiago/sipgo/sip"
)

// Resending an in-dialog request after its link to the next node failed.
//
// A libp2p connection between two nodes may drop for a moment: a circuit relay ends a
// relayed connection at its limits (duration, bytes), a NAT forgets a mapping, a peer
// redials. A request sent in that gap fails at once (no stream), and without more a BYE sent
// then is lost: the other phone stays off-hook. Over UDP the request would have been
// retransmitted for Timer F; over the reliable node-to-node link the node resends it
// instead, on a new stream, after linkRetryDelays, while linkRetryWindow lasts. The
// resent request keeps its Via branch, so a node that did receive the first copy absorbs
// the second as a retransmission. Initial requests are not resent: their binding is
// looked up again instead (core.go), and a caller is better answered 480 at once than
// after the window.

// linkRetryDelays are the waits before each resend; linkRetryWindow bounds them all,
// counted from the first failure.
var linkRetryDelays = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}

const linkRetryWindow = 8 * time.Second

// linkRetry is the state of r's resends.
type linkRetry struct {
	tries int
	first time.Time
}

// resend sends r's request again along its hop after a link failure, waiting first
// (linkRetryDelays). It returns sent when a new client transaction took the request
// (r.ct), cancelled when upstream cancelled during the wait, and neither when the request
// is not to be resent, the node is closing or the resends ran out.
func (b *Bridge) resend(r *relayCall, lr *linkRetry, cancel <-chan struct{}) (sent, cancelled bool) {
	if r.f.hop.peer == "" || r.req.IsAck() || !withinDialog(r.req) {
		return false, false
	}
	if lr.first.IsZero() {
		lr.first = time.Now()
	}
	for lr.tries < len(linkRetryDelays) {
		wait := linkRetryDelays[lr.tries]
		if time.Since(lr.first)+wait > linkRetryWindow {
			return false, false
		}
		lr.tries++
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-cancel:
			t.Stop()
			return false, true
		case <-b.ctx.Done():
			t.Stop()
			return false, false
		}
		b.lim.stats.requestsResent.Add(1)
		p, err := b.pathTo(r.f.hop)
		if err == nil {
			var ct *clientTx
			if ct, err = b.txl.request(p, r.f.fwd); err == nil {
				r.ct = ct
				return true, false
			}
		}
		b.log.Debug("resending after a link failure failed", "method", r.req.Method, "peer", r.f.hop.peer, "try", lr.tries, "err", err)
	}
	return false, false
}

// withinDialog reports whether req is sent within a dialog (its To has a tag).
func withinDialog(req *sip.Request) bool {
	to := req.To()
	if to == nil {
		return false
	}
	_, ok := to.Params.Get("tag")
	return ok
}
