package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"

	"github.com/hiersip/hiersip/internal/p2pnet"
)

// MDNSMaxRetries bounds the connection attempts to one peer found by mDNS.
// mDNS reports the peer again within its TTL, which starts a fresh series.
const MDNSMaxRetries = 8

// mdnsYield is how long the node with the greater peer ID waits before it
// dials a peer found by mDNS. Two nodes on a LAN usually find each other
// within milliseconds; if both dialled at once, go-libp2p's TCP transport
// (which dials from its listen port) would make a TCP simultaneous open, a
// single connection on which both ends start the security handshake as its
// client and fail. The yield leaves the dial to the node with the smaller ID.
const mdnsYield = 250 * time.Millisecond

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

	notifee *network.NotifyBundle

	mu      sync.Mutex
	closed  bool
	pending map[peer.ID]*mdnsSeries // peers with a connection series under way
	wg      sync.WaitGroup
}

// mdnsSeries is the state of the connection series to one peer found by mDNS.
type mdnsSeries struct {
	info peer.AddrInfo
	// up is signalled when a connection to the peer appears, whoever made
	// it, so that a series waiting for the peer's own dial stops waiting.
	up chan struct{}
}

func newMDNSDiscovery(ctx context.Context, b *Bootstrapper) *mdnsDiscovery {
	d := &mdnsDiscovery{b: b, ctx: ctx, pending: make(map[peer.ID]*mdnsSeries)}
	d.svc = mdns.NewMdnsService(b.h, MDNSServiceName(b.overlay), d)
	// Called synchronously by the swarm: it must not block.
	d.notifee = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if s := d.pending[c.RemotePeer()]; s != nil {
			select {
			case s.up <- struct{}{}:
			default:
			}
		}
	}}
	b.h.Network().Notify(d.notifee)
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
	d.b.h.Network().StopNotify(d.notifee)
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
	b.emit(Event{Kind: EventFound, Source: SourceMDNS, Peer: info.ID})
	if cur, ok := d.pending[info.ID]; ok {
		cur.info.Addrs = p2pnet.MergeAddrInfos(nil, cur.info, info)[0].Addrs
		d.mu.Unlock()
		return
	}
	series := &mdnsSeries{info: info, up: make(chan struct{}, 1)}
	d.pending[info.ID] = series
	d.wg.Add(1)
	d.mu.Unlock()
	go d.connect(series)
}

// connect dials the series' peer until it is connected, the bootstrapper
// closes or MDNSMaxRetries attempts failed. If the peer has the smaller ID it
// first gives the peer mdnsYield to dial us.
func (d *mdnsDiscovery) connect(s *mdnsSeries) {
	b, p := d.b, s.info.ID
	defer d.wg.Done()
	defer func() {
		d.mu.Lock()
		delete(d.pending, p)
		d.mu.Unlock()
	}()
	backoff := b.cfg.minBackoff
	waited := false // whether this series has yielded or failed a dial
	if b.h.ID() > p {
		if b.h.Network().Connectedness(p) != network.Connected {
			if !d.wait(s, mdnsYield) {
				return
			}
			waited = true
		} else {
			// The peer, announcing itself to us as we to it, may have dialled us
			// already: a connection that new counts as its answer.
			waited = openedWithin(b.h.Network(), p, mdnsYield)
		}
	}
	for attempt := 1; ; attempt++ {
		if b.h.Network().Connectedness(p) == network.Connected {
			// The peer dialled us (or another source connected it) while we
			// waited: the peer found by mDNS is connected all the same.
			if waited {
				b.connected(SourceMDNS, p)
			}
			return
		}
		d.mu.Lock()
		info := peer.AddrInfo{ID: p, Addrs: s.info.Addrs}
		d.mu.Unlock()
		if b.dial(d.ctx, SourceMDNS, info) == nil || d.ctx.Err() != nil {
			return
		}
		if attempt >= MDNSMaxRetries {
			b.log.Debug("giving up on mDNS peer until it is announced again", "peer", p)
			return
		}
		if !d.wait(s, jitter(backoff)) {
			return
		}
		waited = true
		backoff = min(2*backoff, b.cfg.maxBackoff)
	}
}

// wait waits for dur of the bootstrapper's clock or for a connection to the
// series' peer, and reports false if the discovery stopped meanwhile.
func (d *mdnsDiscovery) wait(s *mdnsSeries, dur time.Duration) bool {
	t := d.b.clock.Timer(dur)
	defer t.Stop()
	select {
	case <-d.ctx.Done():
		return false
	case <-s.up:
		return true
	case <-t.C:
		return true
	}
}

// openedWithin reports whether a connection to p opened within the last d.
func openedWithin(n network.Network, p peer.ID, d time.Duration) bool {
	for _, c := range n.ConnsToPeer(p) {
		if time.Since(c.Stat().Opened) <= d {
			return true
		}
	}
	return false
}
