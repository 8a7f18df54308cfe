package node

import (
	"path/filepath"

	"github.com/hiersip/hiersip/domains"
	ma "github.com/multiformats/go-multiaddr"
)

// newBootstrapper returns the bootstrapper of one of the node's overlays
// (its domain, or the global overlay): the sources of draft §4.1 that the
// configuration selects, the peer cache in the data directory, and "joined"
// meaning the overlay's routing table has a peer.
func (n *Node) newBootstrapper(ov *domains.Overlay, bc BootstrapConfig) (*domains.Bootstrapper, error) {
	cfg := domains.BootstrapConfig{
		Domain:  ov.Name(),
		MDNS:    !bc.DisableMDNS,
		WebURLs: bc.WebStations,
		Peers:   ov.Peers,
		Joined:  ov.Joined,
		Logger:  n.log,
		OnEvent: func(ev domains.BootstrapEvent) {
			n.cfg.Metrics.bootstrapEvent(overlayLabel(ov), ev)
			n.onBootstrapEvent(ev)
		},
	}
	for _, s := range bc.Peers {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, err
		}
		cfg.Static = append(cfg.Static, a)
	}
	if n.cfg.DataDir != "" && !bc.DisableCache {
		cfg.CacheFile = filepath.Join(n.cfg.DataDir, "peers-"+ov.Name()+".json")
	}
	return domains.NewBootstrapper(n.h, cfg)
}

func (n *Node) onBootstrapEvent(ev domains.BootstrapEvent) {
	if ev.Kind == domains.BootstrapJoined {
		n.log.Debug("bootstrap joined", "source", ev.Source)
	}
}
