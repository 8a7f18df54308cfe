package sipbridge

import "github.com/libp2p/go-libp2p/core/peer"

// WithMembership restricts relaying to the members of this node's domain:
// member reports whether a peer is one. A request from a peer that is not a
// member is answered 403 when it would leave this node for another node that
// is not a member either: a target in another domain (the inter-domain
// route), or a Route naming such a node. Requests of non-members for this
// domain's users (another domain's proxy forwarding to us) are served as
// before, and so is everything from local UAs. Without this option the
// bridge relays for any peer.
func WithMembership(member func(peer.ID) bool) Option {
	return func(c *config) error { c.member = member; return nil }
}

// relayDenied reports whether a request from peer from may not be relayed to
// peer to ("" for a node of another domain).
func (b *Bridge) relayDenied(from, to peer.ID) bool {
	m := b.cfg.member
	if m == nil || from == "" || m(from) {
		return false
	}
	return to == "" || !m(to)
}

func (b *Bridge) relayDeniedReason() string {
	return "Forbidden: this node relays only for members of domain " + b.domain
}
