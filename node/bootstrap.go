package node

import (
	"path/filepath"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/bootstrap"
	"github.com/hiersip/hiersip/domains"
)

// newBootstrapper returns the bootstrapper of one of the node's overlays
// (its domain, or the global overlay): the sources of draft §4.1 that the
// configuration selects, the peer cache in the data directory, and "joined"
// meaning the overlay's routing table has a peer.
func (n *Node) newBootstrapper(ov *domains.Overlay, bc BootstrapConfig) (*bootstrap.Bootstrapper, error) {
	opts := []bootstrap.Option{
		bootstrap.WithPeers(ov.Peers),
		bootstrap.WithJoined(ov.Joined),
		bootstrap.WithLogger(n.log),
		bootstrap.WithClock(n.cfg.Clock),
		bootstrap.WithEventHook(func(ev bootstrap.Event) {
			n.cfg.Metrics.bootstrapEvent(overlayLabel(ov), ev)
			if ev.Kind == bootstrap.EventJoined {
				n.log.Debug("bootstrap joined", "source", ev.Source)
			}
		}),
	}
	if !bc.DisableMDNS {
		opts = append(opts, bootstrap.WithMDNS())
	}
	if len(bc.WebStations) > 0 {
		opts = append(opts, bootstrap.WithWebStations(bc.WebStations...))
	}
	for _, s := range bc.Peers {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, err
		}
		opts = append(opts, bootstrap.WithStatic(a))
	}
	if n.cfg.DataDir != "" && !bc.DisableCache {
		opts = append(opts, bootstrap.WithCacheFile(filepath.Join(n.cfg.DataDir, "peers-"+ov.Name()+".json")))
	}
	return bootstrap.New(n.h, ov.Name(), opts...)
}
