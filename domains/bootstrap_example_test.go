package domains_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"path/filepath"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func ExampleMDNSServiceName() {
	fmt.Println(domains.MDNSServiceName("pastry"))
	fmt.Println(domains.MDNSServiceName("can"))
	// Output:
	// _hs-e8a10a5bb2a2._udp
	// _hs-9f584196e7fe._udp
}

// A node of domain "pastry" that uses all four bootstrap methods of draft
// §4.1 and serves its own peer list as a web station.
func ExampleNewBootstrapper() {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/0.0.0.0/tcp/4001"))
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	cfg := domains.BootstrapDefaultConfig("pastry") // mDNS on
	cfg.Static = []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWLeVahpSN4m42zDhGUxLa8vV6iLX6CqzoaKKLGMSujncE")}
	cfg.CacheFile = filepath.Join("/var/lib/hiersip", "peers-pastry.json")
	cfg.WebURLs = []string{"https://bootstrap.example.org/pastry.json"}
	// cfg.Joined and cfg.Peers would read the domain DHT's routing table.
	cfg.OnEvent = func(ev domains.BootstrapEvent) {
		if ev.Kind == domains.BootstrapJoined {
			log.Printf("joined pastry via %s", ev.Source)
		}
	}
	b, err := domains.NewBootstrapper(h, cfg)
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	http.Handle("/pastry.json", domains.WebStationHandler("pastry", func() []peer.AddrInfo {
		var out []peer.AddrInfo
		for _, p := range h.Network().Peers() {
			out = append(out, h.Peerstore().PeerInfo(p))
		}
		return out
	}))
	<-b.JoinedCh()
}
