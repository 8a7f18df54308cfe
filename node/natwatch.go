package node

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/hiersip/hiersip/internal/p2pnet"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// This file holds the node's NAT runtime watchers: they follow its host's
// addresses and connections while it runs (the NAT configuration of a host
// New creates is in nat.go, the stale-connection check in staleconns.go).

// watchAddrs re-stores the node's records when its addresses change: a NATed
// node's relayed addresses appear only once AutoRelay holds a reservation,
// after the node may have registered its users and published its proxy
// record, and remote nodes can only reach it through them.
func (n *Node) watchAddrs() error {
	sub, err := n.h.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		return fmt.Errorf("node: subscribe to address updates: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		const settle = time.Second // a reservation changes several addresses at once
		var t *time.Timer
		var fire <-chan time.Time
		last := relayAddrCount(n.h.Addrs())
		for {
			select {
			case <-n.ctx.Done():
				if t != nil {
					t.Stop()
				}
				return
			case _, ok := <-sub.Out():
				if !ok {
					return
				}
				if t == nil {
					t = time.NewTimer(settle)
				} else {
					t.Reset(settle)
				}
				fire = t.C
			case <-fire:
				fire = nil
				addrs := n.h.Addrs()
				if c := relayAddrCount(addrs); c != last {
					n.log.Info("relayed addresses changed, re-storing records", "relayed", c, "addrs", addrs)
					last = c
					n.locator.republish()
					n.duties.republishNow()
				}
			}
		}
	}()
	return nil
}

// holePunchProtocol is DCUtR's protocol ID. The hole-punching service
// registers it only once the host knows a public address of its own.
const holePunchProtocol = "/libp2p/dcutr"

// holePunchDirectDial bounds DCUtR's direct dial before it punches.
const holePunchDirectDial = time.Second

// punchWhenReady closes the gap of go-libp2p's hole punching at start-up:
// the peer that receives a relayed connection starts the punch at once, and
// gives up for good if this node does not speak DCUtR yet, which happens
// until identify has told it its public address (the first seconds, when
// the bootstrapper dials its configured peers through their relays). Once
// the protocol is registered, the node re-dials the peers it reaches only
// through relayed connections, so that they punch again.
func (n *Node) punchWhenReady() {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		const limit = 2 * time.Minute
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for deadline := time.Now().Add(limit); ; {
			select {
			case <-n.ctx.Done():
				return
			case <-t.C:
			}
			if slices.Contains(n.h.Mux().Protocols(), holePunchProtocol) {
				break
			}
			if time.Now().After(deadline) {
				return
			}
		}
		// Every peer reached only through relays, whoever dialled: closing
		// just our outbound circuits is not enough, since Connect would then
		// reuse the peer's inbound one and no new punch would start.
		seen := map[peer.ID]bool{}
		for _, c := range n.h.Network().Conns() {
			p := c.RemotePeer()
			if seen[p] || !p2pnet.RelayedAddr(c.RemoteMultiaddr()) || n.pathTo(p).Direct > 0 {
				continue
			}
			seen[p] = true
			n.log.Debug("re-dialling relayed peer for hole punching", "remote", p)
			_ = n.h.Network().ClosePeer(p)
			ctx, cancel := context.WithTimeout(network.WithAllowLimitedConn(n.ctx, "hiersip-holepunch"), 10*time.Second)
			if err := n.h.Connect(ctx, n.h.Peerstore().PeerInfo(p)); err != nil && n.ctx.Err() == nil {
				n.log.Debug("re-dial for hole punching failed", "remote", p, "err", err)
			}
			cancel()
		}
	}()
}

func relayAddrCount(addrs []ma.Multiaddr) int {
	c := 0
	for _, a := range addrs {
		if p2pnet.RelayedAddr(a) {
			c++
		}
	}
	return c
}

// logConns logs, at debug level, every connection opened and closed with
// its path (direct or relayed): when hole punching replaced a relayed
// connection, and how long it took, can be read from the log.
func (n *Node) logConns() {
	if !n.log.Enabled(n.ctx, slog.LevelDebug) {
		return
	}
	path := func(c network.Conn) string {
		if p2pnet.Relayed(c) {
			return "relayed"
		}
		return "direct"
	}
	nb := &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			n.log.Debug("connection opened", "remote", c.RemotePeer(), "path", path(c),
				"direction", strings.ToLower(c.Stat().Direction.String()), "addr", c.RemoteMultiaddr())
		},
		DisconnectedF: func(_ network.Network, c network.Conn) {
			n.log.Debug("connection closed", "remote", c.RemotePeer(), "path", path(c), "addr", c.RemoteMultiaddr())
		},
	}
	n.notifyUntilClose(nb)
}

// notifyUntilClose has the host's network notify nb until the node closes.
func (n *Node) notifyUntilClose(nb network.Notifiee) {
	n.h.Network().Notify(nb)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		<-n.ctx.Done()
		n.h.Network().StopNotify(nb)
	}()
}
