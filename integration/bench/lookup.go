package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/hiersip/hiersip/domains"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/routing"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
)

// lookupDomain is one domain overlay of n in-process hosts on a mocknet.
type lookupDomain struct {
	mn    mocknet.Mocknet
	hosts []host.Host
	keys  []crypto.PrivKey
	ovs   []*domains.Overlay
}

// perBucket is how many peers of each common-prefix-length bucket every
// node is given in its routing table: a converged Kademlia table, without
// the minutes of refresh queries a thousand nodes would need to build it.
const perBucket = 3

// newLookupDomain starts n hosts linked all-to-all on a mocknet (no
// latency: the figures are protocol cost, not network delay), each with the
// domain overlay of "pastry" exactly as a node builds it (domains.Overlay,
// kad-dht server mode, the binding validator), and fills every routing table
// with perBucket peers per bucket. Connections open on demand, as lookups
// dial.
func newLookupDomain(ctx context.Context, n int, log *slog.Logger) (*lookupDomain, error) {
	d := &lookupDomain{mn: mocknet.New()}
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	for i := range n {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, err
		}
		a, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>16&255, i>>8&255, i&255))
		if err != nil {
			return nil, err
		}
		h, err := d.mn.AddPeer(sk, a)
		if err != nil {
			return nil, err
		}
		ov, err := domains.NewDomainOverlay(h, "pastry", domains.WithLogger(log),
			domains.WithDHTOptions(dht.DisableAutoRefresh()))
		if err != nil {
			return nil, err
		}
		d.hosts, d.keys, d.ovs = append(d.hosts, h), append(d.keys, sk), append(d.ovs, ov)
	}
	if err := d.mn.LinkAll(); err != nil {
		return nil, err
	}
	ids := make([]kb.ID, n)
	for i, h := range d.hosts {
		ids[i] = kb.ConvertPeerID(h.ID())
	}
	for i, h := range d.hosts {
		buckets := map[int][]int{}
		for j := range d.hosts {
			if j != i {
				cpl := kb.CommonPrefixLen(ids[i], ids[j])
				buckets[cpl] = append(buckets[cpl], j)
			}
		}
		rt := d.ovs[i].DHT().RoutingTable()
		for _, js := range buckets {
			mrand.Shuffle(len(js), func(a, b int) { js[a], js[b] = js[b], js[a] })
			for _, j := range js[:min(perBucket, len(js))] {
				p := d.hosts[j]
				h.Peerstore().AddAddrs(p.ID(), p.Addrs(), peerstore.PermanentAddrTTL)
				h.Peerstore().AddPubKey(p.ID(), d.keys[j].GetPublic())
				if _, err := rt.TryAddPeer(p.ID(), true, false); err != nil {
					return nil, fmt.Errorf("bench: routing table of node %d: %w", i, err)
				}
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	// Connect every node to its routing-table peers, as in a domain that has
	// been up for a while: lookups then measure queries, not dials.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	work := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				h := d.hosts[i]
				for _, p := range d.ovs[i].DHT().RoutingTable().ListPeers() {
					if h.Network().Connectedness(p) == network.Connected {
						continue
					}
					if err := h.Connect(ctx, h.Peerstore().PeerInfo(p)); err != nil {
						select {
						case errs <- fmt.Errorf("bench: connect node %d: %w", i, err):
						default:
						}
					}
				}
			}
		}()
	}
	for i := range d.hosts {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	ok = true
	return d, nil
}

func (d *lookupDomain) Close() {
	for _, ov := range d.ovs {
		_ = ov.Close()
	}
	_ = d.mn.Close()
}

// lookupStats are the costs of one lookup, from kad-dht's query events.
type lookupStats struct {
	queried int // peers sent a query (RPCs)
	hops    int // longest chain of referrals to a queried peer: 1 = a routing-table peer
}

// collectQueryEvents counts the query events on ch until it closes. A peer
// from the caller's routing table is at depth 1; a peer first named by a
// response of a peer at depth k is at depth k+1.
func collectQueryEvents(ch <-chan *routing.QueryEvent, self peer.ID) lookupStats {
	depth := map[peer.ID]int{}
	var st lookupStats
	for ev := range ch {
		switch ev.Type {
		case routing.SendingQuery:
			st.queried++
			dp, ok := depth[ev.ID]
			if !ok {
				dp = 1
				depth[ev.ID] = dp
			}
			st.hops = max(st.hops, dp)
		case routing.PeerResponse:
			dp := depth[ev.ID]
			if dp == 0 {
				dp = 1
			}
			for _, ai := range ev.Responses {
				if _, seen := depth[ai.ID]; !seen && ai.ID != self {
					depth[ai.ID] = dp + 1
				}
			}
		}
	}
	return st
}

const lookupMethod = "in-process: %d hosts on a libp2p mocknet (no link latency), each with the domain overlay a node runs (kad-dht server, binding validator, quorum %d), routing tables filled with %d peers per bucket and connected to them; %d AORs stored by random nodes with PutBinding, each looked up (GetBinding, the code of node.Lookup) from %d other random nodes, sequentially"

// lookup measures AOR lookup latency and hops in domains of each size.
func (r *runner) lookup(ctx context.Context) error {
	quiet := slog.New(slog.NewTextHandler(discard{}, nil))
	type point struct {
		n        int
		lat, rpc float64
	}
	var pts []point
	for _, n := range r.cfg.LookupSizes {
		t0 := time.Now()
		d, err := newLookupDomain(ctx, n, quiet)
		if err != nil {
			return fmt.Errorf("domain of %d: %w", n, err)
		}
		r.log.Info("bench: lookup domain up", "nodes", n, "took", time.Since(t0).Round(time.Millisecond))
		lat, hops, rpcs, err := d.measure(ctx, r.cfg.Lookups)
		var plat []float64
		if err == nil {
			plat, err = d.measureProxy(ctx, r.cfg.Lookups)
		}
		d.Close()
		if err != nil {
			return fmt.Errorf("domain of %d: %w", n, err)
		}
		r.add(SectionLookup, fmt.Sprintf("proxy record resolution, %d nodes", n), "µs",
			fmt.Sprintf("the same domain: the domain's proxy record (a proxy, 3 electors, 2 endorsements) stored by a random node with PutProxyRecord, looked up %d times (GetProxyRecord, the code of node.LocalProxies and DomainProxies) from random other nodes, sequentially", r.cfg.Lookups), plat)
		aors := max(r.cfg.Lookups/4, 1)
		m := fmt.Sprintf(lookupMethod, n, domains.DefaultQuorum, perBucket, aors, r.cfg.Lookups/aors)
		f := r.add(SectionLookup, fmt.Sprintf("lookup latency, %d nodes", n), "µs", m, lat)
		r.add(SectionLookup, fmt.Sprintf("lookup hops, %d nodes", n), "hops", "longest chain of referrals to a queried peer (kad-dht query events; 1 = a peer of the caller's own routing table)", hops)
		fr := r.add(SectionLookup, fmt.Sprintf("lookup RPCs, %d nodes", n), "RPCs", "peers sent a GET_VALUE query per lookup (kad-dht query events)", rpcs)
		pts = append(pts, point{n, f.Median, fr.Median})
	}
	if len(pts) >= 2 {
		a, b := pts[0], pts[len(pts)-1]
		g := (b.lat / a.lat) / (math.Log(float64(b.n)) / math.Log(float64(a.n)))
		r.add(SectionLookup, nameLookupGrowth, "×", fmt.Sprintf("(median latency at %d / at %d) ÷ (ln %d / ln %d); 1 = grows exactly like log N, < 1 slower", b.n, a.n, b.n, a.n), []float64{g})
		r.add(SectionLookup, "lookup RPC growth vs log N", "×", "the same for the median number of RPCs (not disturbed by other load on the machine)", []float64{(b.rpc / a.rpc) / (math.Log(float64(b.n)) / math.Log(float64(a.n)))})
	}
	return nil
}

// measure stores aors bindings and looks each up from several other nodes.
func (d *lookupDomain) measure(ctx context.Context, lookups int) (lat, hops, rpcs []float64, err error) {
	n := len(d.hosts)
	aors := max(lookups/4, 1)
	per := lookups / aors
	type stored struct {
		aor   domains.AOR
		owner int
	}
	var recs []stored
	for i := range aors {
		owner := mrand.IntN(n)
		aor, err := domains.ParseAOR(fmt.Sprintf("sip:user%d-%s@pastry", i, randHex(3)))
		if err != nil {
			return nil, nil, nil, err
		}
		now := time.Now()
		b := &domains.Binding{AOR: aor.String(), Peer: d.hosts[owner].ID(), Addrs: d.hosts[owner].Addrs(),
			Contacts: []domains.Contact{{URI: "sip:u@127.0.0.1:9", Expires: now.Add(time.Hour)}},
			Created:  now, Expires: now.Add(time.Hour), Seq: 1}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = d.ovs[owner].PutBinding(pctx, d.keys[owner], b)
		cancel()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("put %s: %w", aor, err)
		}
		recs = append(recs, stored{aor, owner})
	}
	for _, s := range recs {
		for range per {
			from := mrand.IntN(n)
			for from == s.owner && n > 1 {
				from = mrand.IntN(n)
			}
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			qctx, events := routing.RegisterForQueryEvents(qctx)
			var st lookupStats
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); st = collectQueryEvents(events, d.hosts[from].ID()) }()
			t0 := time.Now()
			_, err := d.ovs[from].GetBinding(qctx, s.aor)
			el := time.Since(t0)
			cancel() // closes events
			wg.Wait()
			if err != nil {
				return nil, nil, nil, fmt.Errorf("lookup %s from node %d: %w", s.aor, from, err)
			}
			lat = append(lat, us(el))
			hops = append(hops, float64(st.hops))
			rpcs = append(rpcs, float64(st.queried))
		}
	}
	return lat, hops, rpcs, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// measureProxy stores the domain's proxy record once, with electors and
// endorsements as a proxy publishes it, and resolves it from random nodes.
func (d *lookupDomain) measureProxy(ctx context.Context, lookups int) ([]float64, error) {
	n := len(d.hosts)
	owner := mrand.IntN(n)
	now := time.Now()
	electors := []peer.ID{d.hosts[owner].ID()}
	for i := 1; i <= 2 && i < n; i++ {
		electors = append(electors, d.hosts[(owner+i)%n].ID())
	}
	rec := &domains.ProxyRecord{Domain: "pastry", Signer: d.hosts[owner].ID(), Epoch: 1, Electors: electors,
		Proxies: []peer.AddrInfo{{ID: d.hosts[owner].ID(), Addrs: d.hosts[owner].Addrs()}},
		Issued:  now, Expires: now.Add(time.Minute)}
	for i := range electors[1:] {
		en, err := domains.Endorse(d.keys[(owner+1+i)%n], "pastry", 1, rec.Signer)
		if err != nil {
			return nil, err
		}
		rec.Endorsements = append(rec.Endorsements, en)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := d.ovs[owner].PutProxyRecord(pctx, d.keys[owner], rec)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("put proxy record: %w", err)
	}
	var lat []float64
	for range lookups {
		from := mrand.IntN(n)
		for from == owner && n > 1 {
			from = mrand.IntN(n)
		}
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		t0 := time.Now()
		_, err := d.ovs[from].GetProxyRecord(qctx, "pastry")
		el := time.Since(t0)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("proxy record from node %d: %w", from, err)
		}
		lat = append(lat, us(el))
	}
	return lat, nil
}
