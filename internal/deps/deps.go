package deps

import (
	_ "github.com/emiago/sipgo"
	_ "github.com/ipfs/go-datastore"
	_ "github.com/libp2p/go-libp2p"
	_ "github.com/libp2p/go-libp2p-kad-dht"
	_ "github.com/libp2p/go-libp2p-pubsub"
	_ "github.com/libp2p/go-libp2p/p2p/net/mock"
	_ "github.com/multiformats/go-multiaddr"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/time/rate"
)
