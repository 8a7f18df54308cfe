package node

import (
	"github.com/hiersip/hiersip/internal/p2pnet"
	"github.com/libp2p/go-libp2p/core/peer"
)

// This file holds the node's path diagnostics: how it is connected to a
// peer (Status, the admin endpoint), and closing those connections (POST
// /disconnect).

// disconnect closes every connection to p (the next exchange with p opens a
// new one, relayed or direct). It returns how many were open.
func (n *Node) disconnect(p peer.ID) (int, error) {
	c := len(n.h.Network().ConnsToPeer(p))
	return c, n.h.Network().ClosePeer(p)
}

// PeerPath describes how a node is connected to a peer.
type PeerPath struct {
	Direct  int // direct connections
	Relayed int // connections through a relay (limited)
}

// String is "direct", "relayed", "direct+relayed" or "none".
func (p PeerPath) String() string {
	switch {
	case p.Direct > 0 && p.Relayed > 0:
		return "direct+relayed"
	case p.Direct > 0:
		return "direct"
	case p.Relayed > 0:
		return "relayed"
	}
	return "none"
}

// pathTo reports the node's open connections to p, direct and relayed.
func (n *Node) pathTo(p peer.ID) PeerPath {
	var pp PeerPath
	for _, c := range n.h.Network().ConnsToPeer(p) {
		if p2pnet.Relayed(c) {
			pp.Relayed++
		} else {
			pp.Direct++
		}
	}
	return pp
}
