package domains

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// MDNSMaxRetries bounds the connection attempts to one peer found by mDNS.
// mDNS reports the peer again within its TTL, which starts a fresh series.
const MDNSMaxRetries = 8

// MDNSServiceName returns the DNS-SD service name that the nodes of domain
// announce and browse on the LAN: "_hs-" followed by the first 12 hex digits
// of SHA-256(domain), then "._udp". The service label (without its
// underscore) is 15 characters, the limit of RFC 6335, whatever the length
// of the domain name; different domains get different names, so mDNS keeps
// domains apart.
func MDNSServiceName(domain string) string {
	sum := sha256.Sum256([]byte(domain))
	return "_hs-" + hex.EncodeToString(sum[:6]) + "._udp"
}

// mdnsDiscovery runs go-libp2p's mDNS service for one domain. Its notifee
// connects to every peer found and retries with backoff, because the mDNS
// service reports a peer only once per TTL and never retries itself.
type mdnsDiscovery struct {
	b   *Bootstrapper
	ctx context.Context
	svc mdns.Service

	mu      sync.Mutex
	closed  bool
	pending map[peer.ID]*peer.AddrInfo // peers with a retry series under way
	wg      sync.WaitGroup
}

func newMDNSDiscovery(ctx context.Context, b *Bootstrapper) *mdnsDiscovery {
	d := &mdnsDiscovery{b: b, ctx: ctx, pending: make(map[peer.ID]*peer.AddrInfo)}
	d.svc = mdns.NewMdnsService(b.h, MDNSServiceName(b.cfg.Domain), d)
	return d
}

func (d *mdnsDiscovery) start() error {
	if err := d.svc.Start(); err != nil {
		_ = d.svc.Close()
		return err
	}
	return nil
}

func (d *mdnsDiscovery) close() error {
	err := d.svc.Close()
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.wg.Wait()
	return err
}

// HandlePeerFound implements mdns.Notifee. The mDNS service calls it on a
// goroutine of its own, possibly even after Close.
func (d *mdnsDiscovery) HandlePeerFound(info peer.AddrInfo) {
	b := d.b
	if info.ID == b.h.ID() {
		return
	}
	d.mu.Lock()
	if d.closed || d.ctx.Err() != nil {
		d.mu.Unlock()
		return
	}
	b.emit(BootstrapEvent{Kind: BootstrapFound, Source: BootstrapSourceMDNS, Peer: info.ID})
	if cur, ok := d.pending[info.ID]; ok {
		cur.Addrs = bootstrapMergeAddrInfos([]peer.AddrInfo{*cur, info})[0].Addrs
		d.mu.Unlock()
		return
	}
	d.pending[info.ID] = &info
	d.wg.Add(1)
	d.mu.Unlock()
	go d.connect(info.ID)
}

// connect dials p until it succeeds, the bootstrapper closes or
// MDNSMaxRetries attempts failed.
func (d *mdnsDiscovery) connect(p peer.ID) {
	b := d.b
	defer d.wg.Done()
	defer func() {
		d.mu.Lock()
		delete(d.pending, p)
		d.mu.Unlock()
	}()
	backoff := b.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		if b.h.Network().Connectedness(p) == network.Connected {
			return
		}
		d.mu.Lock()
		info := peer.AddrInfo{ID: p, Addrs: d.pending[p].Addrs}
		d.mu.Unlock()
		if b.dial(d.ctx, BootstrapSourceMDNS, info) == nil || d.ctx.Err() != nil {
			return
		}
		if attempt >= MDNSMaxRetries {
			b.log.Debug("giving up on mDNS peer until it is announced again", "peer", p)
			return
		}
		t := time.NewTimer(bootstrapJitter(backoff))
		select {
		case <-d.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, b.cfg.MaxBackoff)
	}
}
