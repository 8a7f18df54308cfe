package bootstrap_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"path/filepath"

	"github.com/hiersip/hiersip/bootstrap"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func ExampleMDNSServiceName() {
	fmt.Println(bootstrap.MDNSServiceName("pastry"))
	fmt.Println(bootstrap.MDNSServiceName("can"))
	// Output:
	// _hs-e8a10a5bb2a2._udp
	// _hs-9f584196e7fe._udp
}

// A node of domain "pastry" that uses all four bootstrap methods of draft
// §4.1 and serves its own peer list as a web station.
func ExampleNew() {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/0.0.0.0/tcp/4001"))
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	b, err := bootstrap.New(h, "pastry",
		bootstrap.WithMDNS(),
		bootstrap.WithStatic(ma.StringCast("/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWLeVahpSN4m42zDhGUxLa8vV6iLX6CqzoaKKLGMSujncE")),
		bootstrap.WithCacheFile(filepath.Join("/var/lib/hiersip", "peers-pastry.json")),
		bootstrap.WithWebStations("https://bootstrap.example.org/pastry.json"),
		// WithJoined and WithPeers would read the domain DHT's routing table.
		bootstrap.WithEventHook(func(ev bootstrap.Event) {
			if ev.Kind == bootstrap.EventJoined {
				log.Printf("joined pastry via %s", ev.Source)
			}
		}))
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	http.Handle("/pastry.json", bootstrap.WebStationHandler("pastry", func() []peer.AddrInfo {
		var out []peer.AddrInfo
		for _, p := range h.Network().Peers() {
			out = append(out, h.Peerstore().PeerInfo(p))
		}
		return out
	}))
	<-b.Joined()
}
