package node

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// bootstrap is a temporary static-peer bootstrap until domains.Bootstrapper lands.
type bootstrap struct {
	n      *Node
	peers  []peer.AddrInfo
	joined chan struct{}
	once   sync.Once
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newBootstrap(n *Node) (*bootstrap, error) {
	b := &bootstrap{n: n, joined: make(chan struct{})}
	for _, s := range n.cfg.Bootstrap.Peers {
		ai, err := peer.AddrInfoFromP2pAddr(ma.StringCast(s))
		if err != nil {
			return nil, err
		}
		b.peers = append(b.peers, *ai)
	}
	return b, nil
}

func (b *bootstrap) start(ctx context.Context) error {
	ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		backoff := 50 * time.Millisecond
		for {
			if b.n.domain.Joined() {
				b.once.Do(func() { close(b.joined) })
				return
			}
			for _, p := range b.peers {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_ = b.n.h.Connect(cctx, p)
				cancel()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			if backoff < 2*time.Second {
				backoff *= 2
			}
		}
	}()
	return nil
}

func (b *bootstrap) joinedCh() <-chan struct{} { return b.joined }

func (b *bootstrap) close() error {
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
	return nil
}
