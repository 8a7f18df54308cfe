package node

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/hiersip/hiersip/internal/p2pnet"
)

// Defaults of NATConfig: relayed connections sized for media, since two NATed
// end nodes that hole punching cannot join carry their calls' RTP through the
// relay (package media). A G.711 call takes about 11.5 KB/s per direction on
// the wire with hiersip's framing and libp2p's encryption (41 MB an hour), and
// all the calls between two nodes share their connection: 128 MiB per
// direction holds three such calls for an hour. When a connection reaches a
// limit the relay closes it and the media goes on over a new one (a gap of a
// few packets, see README "Media"). go-libp2p's other relay resources stay:
// at most 16 circuits per peer (so 16 × 128 MiB per peer and hour) and 128
// reservations.
const (
	DefaultRelayDuration = time.Hour
	DefaultRelayData     = 128 << 20 // bytes per direction
)

// RelayHopProtocol is the protocol a circuit relay v2 server speaks; peers
// that announce it are relay candidates.
const RelayHopProtocol = "/libp2p/circuit/relay/0.2.0/hop"

// NATConfig configures NAT traversal of a node that creates its own host
// (New). The zero value suits a node behind a home NAT: it learns its
// reachability by AutoNAT, takes a reservation on a public relay found
// among Relays, Global.Peers, the domain's proxies, the global overlay and
// the connected peers that offer relaying (AutoRelay), advertises the
// relayed addresses in its records and upgrades relayed connections to
// direct ones by hole punching.
type NATConfig struct {
	// Public says the node has a public address: it serves as circuit
	// relay (limits RelayDuration, RelayData) and AutoNAT server for NATed
	// nodes, and its reachability is forced public unless
	// ForceReachability says otherwise. Set it on servers, seeds and
	// proxies with a public address.
	Public bool
	// Relays are multiaddrs with /p2p/<peer-id> of public relays to
	// reserve a slot on, tried before other candidates.
	Relays []string
	// DisableAutoRelay turns off relay reservations: the node is
	// reachable only by its own addresses.
	DisableAutoRelay bool
	// DisableHolePunching turns off DCUtR hole punching (on by default;
	// both ends of a connection need it): connections through a relay stay
	// relayed.
	DisableHolePunching bool
	// PortMap asks the NAT gateway for a port mapping by UPnP or NAT-PMP.
	PortMap bool
	// ForceReachability is "public" or "private" for operators who know
	// better than AutoNAT; empty follows AutoNAT (or "public" with Public).
	// The election uses it too when Election.Reachability is empty.
	ForceReachability string
	// RelayDuration and RelayData limit each relayed connection through a
	// Public node (defaults DefaultRelayDuration, DefaultRelayData).
	RelayDuration time.Duration
	RelayData     int64
}

// reachability returns the reachability the host is forced to: "public",
// "private" or empty.
func (c NATConfig) reachability() string {
	if c.ForceReachability == "" && c.Public {
		return "public"
	}
	return c.ForceReachability
}

// validate checks c and returns its relays' address infos.
func (c NATConfig) validate() ([]peer.AddrInfo, error) {
	if err := checkReachability("nat.reachability", c.ForceReachability); err != nil {
		return nil, err
	}
	if c.RelayDuration < 0 {
		return nil, &ConfigError{"nat.relay_duration", fmt.Errorf("%v is negative", c.RelayDuration)}
	}
	if c.RelayData < 0 {
		return nil, &ConfigError{"nat.relay_data", fmt.Errorf("%d is negative", c.RelayData)}
	}
	var infos []peer.AddrInfo
	for i, s := range c.Relays {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, &ConfigError{fmt.Sprintf("nat.relays[%d]", i), err}
		}
		ai, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			return nil, &ConfigError{fmt.Sprintf("nat.relays[%d]", i), fmt.Errorf("%s: %w (want /p2p/<peer-id>)", s, err)}
		}
		infos = p2pnet.MergeAddrInfos(infos, *ai)
	}
	return infos, nil
}

// relaySource is AutoRelay's peer source. The host is created before the
// node, so it reads the node lazily: until New sets it, only the configured
// relays are offered.
type relaySource struct {
	static []peer.AddrInfo
	node   atomic.Pointer[Node]
}

// candidates returns up to num relay candidates: configured relays first,
// then connected peers known to speak the relay hop protocol, then the
// global seeds, the cached proxies of other domains and the global overlay's
// peers with a public direct address (AutoRelay connects to them and keeps those that offer relaying).
func (s *relaySource) candidates(num int) []peer.AddrInfo {
	n := s.node.Load()
	if n == nil || n.closed() {
		return limitInfos(slices.Clone(s.static), num)
	}
	var out []peer.AddrInfo
	self := n.h.ID()
	ps := n.h.Peerstore()
	for _, p := range n.h.Network().Peers() {
		if ok, _ := ps.SupportsProtocols(p, RelayHopProtocol); len(ok) > 0 {
			out = p2pnet.MergeAddrInfos(out, ps.PeerInfo(p))
		}
	}
	for _, s := range n.cfg.Global.Peers {
		if ai, err := peer.AddrInfoFromString(s); err == nil {
			out = p2pnet.MergeAddrInfos(out, *ai)
		}
	}
	for _, ai := range n.router.cache.all(n.cfg.Clock.Now()) {
		out = p2pnet.MergeAddrInfos(out, ai)
	}
	if g := n.global.overlay(); g != nil {
		for _, ai := range g.Peers() {
			out = p2pnet.MergeAddrInfos(out, ai)
		}
	}
	out = slices.DeleteFunc(out, func(ai peer.AddrInfo) bool {
		return ai.ID == self || !slices.ContainsFunc(ai.Addrs, isPublicDirect)
	})
	all := slices.Clone(s.static)
	for _, ai := range out {
		all = p2pnet.MergeAddrInfos(all, ai)
	}
	return limitInfos(all, num)
}

func (s *relaySource) peerSource(ctx context.Context, num int) <-chan peer.AddrInfo {
	cands := s.candidates(num)
	ch := make(chan peer.AddrInfo, len(cands))
	for _, ai := range cands {
		ch <- ai
	}
	close(ch)
	return ch
}

// isPublicDirect reports whether a is a public address not through a relay,
// the kind a relay must have to be useful to a NATed node.
func isPublicDirect(a ma.Multiaddr) bool {
	return !p2pnet.RelayedAddr(a) && manet.IsPublicAddr(a)
}

func limitInfos(infos []peer.AddrInfo, num int) []peer.AddrInfo {
	if num >= 0 && len(infos) > num {
		return infos[:num]
	}
	return infos
}

// relayRouting is the host's peer routing (libp2p.Routing makes New's host
// a routed host, which asks it for the addresses of a peer it knows none
// of). It guesses that the peer holds a reservation on a relay this node
// uses too (a configured relay, a relay of its own reservations or a global
// seed) and offers circuit addresses through them. That is how in-dialog
// requests reach a NATed node of another domain whose address only the
// proxies' lookups saw.
type relayRouting struct{ src *relaySource }

func (r relayRouting) FindPeer(_ context.Context, p peer.ID) (peer.AddrInfo, error) {
	addrs := r.src.circuitAddrs(p)
	if len(addrs) == 0 {
		return peer.AddrInfo{}, routing.ErrNotFound
	}
	return peer.AddrInfo{ID: p, Addrs: addrs}, nil
}

// circuitAddrs returns addresses of p through the relays this node knows.
func (s *relaySource) circuitAddrs(p peer.ID) []ma.Multiaddr {
	var relays []ma.Multiaddr
	add := func(ai peer.AddrInfo) {
		if ai.ID == p {
			return
		}
		for _, a := range ai.Addrs {
			if !p2pnet.RelayedAddr(a) {
				relays = append(relays, a.Encapsulate(ma.StringCast("/p2p/"+ai.ID.String())))
			}
		}
	}
	for _, ai := range s.static {
		add(ai)
	}
	n := s.node.Load()
	if n != nil && !n.closed() {
		for _, a := range n.h.Addrs() {
			// Our reservations: <relay address>/p2p/<relay>/p2p-circuit.
			if p2pnet.RelayedAddr(a) {
				relay, _ := ma.SplitFunc(a, func(c ma.Component) bool { return c.Code() == ma.P_CIRCUIT })
				if id, err := relay.ValueForProtocol(ma.P_P2P); err == nil && id != p.String() {
					relays = append(relays, relay)
				}
			}
		}
		for _, str := range n.cfg.Global.Peers {
			if ai, err := peer.AddrInfoFromString(str); err == nil {
				add(*ai)
			}
		}
	}
	circuit := ma.StringCast("/p2p-circuit")
	var out []ma.Multiaddr
	for _, r := range relays {
		c := r.Encapsulate(circuit)
		if !slices.ContainsFunc(out, c.Equal) {
			out = append(out, c)
		}
	}
	return out
}

// AutoRelay tuning: a home node needs one relay quickly, not four after
// three minutes (AutoRelay's defaults, made for the IPFS network).
const (
	autoRelayBootDelay   = 5 * time.Second
	autoRelayMinInterval = 10 * time.Second
	autoRelayBackoff     = 30 * time.Second
)

// hostOptions returns the libp2p options of a host created by New, beyond
// its identity and listen addresses, and the relay peer source that New
// must point at the node once it exists.
func (c Config) hostOptions() ([]libp2p.Option, *relaySource, error) {
	nc := c.NAT
	static, err := nc.validate()
	if err != nil {
		return nil, nil, err
	}
	var opts []libp2p.Option
	switch nc.reachability() {
	case "public":
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case "private":
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	if nc.Public {
		limit := &relayv2.RelayLimit{Duration: nc.RelayDuration, Data: nc.RelayData}
		if limit.Duration == 0 {
			limit.Duration = DefaultRelayDuration
		}
		if limit.Data == 0 {
			limit.Data = DefaultRelayData
		}
		rc := relayv2.DefaultResources()
		rc.Limit = limit
		opts = append(opts, libp2p.EnableRelayService(relayv2.WithResources(rc)), libp2p.EnableNATService())
	}
	src := &relaySource{static: static}
	if !nc.DisableAutoRelay && !nc.Public {
		n := max(1, min(2, len(static)))
		opts = append(opts, libp2p.EnableAutoRelayWithPeerSource(src.peerSource,
			autorelay.WithMinCandidates(1),
			autorelay.WithNumRelays(n),
			autorelay.WithBootDelay(autoRelayBootDelay),
			autorelay.WithMinInterval(autoRelayMinInterval),
			autorelay.WithBackoff(autoRelayBackoff)))
	}
	opts = append(opts, libp2p.Routing(func(host.Host) (routing.PeerRouting, error) { return relayRouting{src}, nil }))
	if !nc.DisableHolePunching {
		// Before punching, DCUtR tries a plain direct dial to every address of the
		// peer when one of them looks public; behind a NAT that drops unsolicited
		// packets, that dial only ends at its timeout (10 s by default) and the call's
		// node-to-node path waits on it. One second is enough for a direct dial
		// that can work; the punch itself is not bounded by it.
		opts = append(opts, libp2p.EnableHolePunching(holepunch.DirectDialTimeout(holePunchDirectDial)))
	}
	if nc.PortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	return opts, src, nil
}
