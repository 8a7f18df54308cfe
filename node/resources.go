package node

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/sipbridge"
)

// ResourceLimits returns the libp2p resource-manager limits of hiersip's protocols on a
// node of domain: SIP between nodes (sipbridge.ProtocolID: one long-lived stream per peer
// and direction, a few more while one is reopened), media between the end nodes of calls
// (media.ProtocolID, the same shape), the election's HELLO (one short stream
// per message) and the DHTs of the domain and the global overlay. Every other scope keeps
// the limits it is built on.
//
// A host created by New uses them on top of go-libp2p's scaled defaults. An application that
// hands its own host to NewWithHost keeps its own resource manager: merge these in when
// building it, e.g.
//
//	limits := rcmgr.DefaultLimits
//	libp2p.SetDefaultServiceLimits(&limits)
//	mgr, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(
//		node.ResourceLimits("pastry").Build(limits.AutoScale())))
//	h, err := libp2p.New(libp2p.ResourceManager(mgr))
func ResourceLimits(domain string) rcmgr.PartialLimitConfig {
	sip := rcmgr.ResourceLimits{
		StreamsInbound: 2048, StreamsOutbound: 2048, Streams: 4096, Memory: 256 << 20,
	}
	sipPeer := rcmgr.ResourceLimits{
		StreamsInbound: 8, StreamsOutbound: 8, Streams: 16, Memory: 16 << 20,
	}
	hello := rcmgr.ResourceLimits{StreamsInbound: 256, StreamsOutbound: 64, Streams: 320, Memory: 16 << 20}
	helloPeer := rcmgr.ResourceLimits{StreamsInbound: 4, StreamsOutbound: 4, Streams: 8, Memory: 1 << 20}
	kad := rcmgr.ResourceLimits{StreamsInbound: 1024, StreamsOutbound: 1024, Streams: 2048, Memory: 64 << 20}
	// Media (media.ProtocolID): one stream per peer and direction, one more while it moves
	// to a new connection; the relay itself accepts 8 inbound streams of a peer.
	med := rcmgr.ResourceLimits{StreamsInbound: 1024, StreamsOutbound: 1024, Streams: 2048, Memory: 256 << 20}
	medPeer := rcmgr.ResourceLimits{StreamsInbound: 8, StreamsOutbound: 4, Streams: 12, Memory: 16 << 20}
	kadPeer := rcmgr.ResourceLimits{StreamsInbound: 32, StreamsOutbound: 32, Streams: 64, Memory: 8 << 20}

	cfg := rcmgr.PartialLimitConfig{
		Protocol: map[protocol.ID]rcmgr.ResourceLimits{
			sipbridge.ProtocolID:            sip,
			media.ProtocolID:                med,
			election.HelloProtocol:          hello,
			kadProtocol(domain):             kad,
			kadProtocol(domains.GlobalName): kad,
		},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{
			sipbridge.ProtocolID:            sipPeer,
			media.ProtocolID:                medPeer,
			election.HelloProtocol:          helloPeer,
			kadProtocol(domain):             kadPeer,
			kadProtocol(domains.GlobalName): kadPeer,
		},
	}
	return cfg
}

// kadProtocol is the kad-dht protocol of an overlay, e.g. /hiersip/pastry/kad/1.0.0.
func kadProtocol(name string) protocol.ID { return domains.ProtocolPrefix(name) + "/kad/1.0.0" }

// newResourceManager builds the resource manager of a host created by New: go-libp2p's
// scaled defaults with ResourceLimits(domain) on top.
func newResourceManager(domain string) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	mgr, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(ResourceLimits(domain).Build(limits.AutoScale())))
	if err != nil {
		return nil, fmt.Errorf("node: resource manager: %w", err)
	}
	return mgr, nil
}

// resourceOption is the libp2p option that installs newResourceManager's manager.
func resourceOption(domain string) libp2p.Option {
	return func(c *libp2p.Config) error {
		mgr, err := newResourceManager(domain)
		if err != nil {
			return err
		}
		return c.Apply(libp2p.ResourceManager(mgr))
	}
}
