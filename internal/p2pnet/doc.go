// Package p2pnet holds the few questions hiersip's packages ask of libp2p
// connections and addresses, answered once: whether a connection or an
// address goes through a circuit relay, and the merge of address infos that
// name the same peer.
//
// A connection is relayed when libp2p marks it limited (a circuit v2
// connection under the relay's limits) or when its remote address has a
// /p2p-circuit component. The node's status and metrics, its NAT watchers,
// the election's observation of peers and the media relay's choice of path
// all use Relayed, so that they never disagree about a connection.
//
// NewStream opens the streams of the SIP links and the media relay: over a
// relayed connection too, and taking the peer's connection as soon as it
// dials back instead of waiting for a dial that hangs on a dead address.
package p2pnet
