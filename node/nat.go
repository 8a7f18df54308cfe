package node

import (
	"github.com/libp2p/go-libp2p"
)

// NATConfig configures NAT traversal of a node that creates its own host.
type NATConfig struct{}

// hostOptions returns the libp2p options of a host created by New, beyond
// its identity and listen addresses.
func (c Config) hostOptions() ([]libp2p.Option, error) {
	return nil, nil
}
