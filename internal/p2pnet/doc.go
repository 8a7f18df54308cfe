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
package p2pnet
