package mailbox

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hiersip/hiersip/domains"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
)

// BenchmarkMailbox: a domain of 10 nodes on loopback takes messages for
// offline users (each store: the recipient's mailbox key, from a cache
// after the first; a lookup of the slot; a store to the key's closest
// nodes, all 10 here) and delivers them (a fetch of 16 slots per user,
// then an ack per slot). b.N messages go to b.N/10 users, from 10 senders
// each (one message per queue) or from one sender each (a queue of 10
// messages, re-stored whole at each message), stored by the 10 nodes in
// turn, 8 at a time. Reported: stored and delivered messages per second,
// the bytes of mail records a storer holds per message (every node stores
// every value here: kad-dht stores at the 20 closest), and the heap growth
// of the whole process (10 nodes) per message once the lookups have ended.
func BenchmarkMailbox(b *testing.B) {
	for _, senders := range []int{10, 1} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) { benchMailbox(b, senders) })
	}
}

func benchMailbox(b *testing.B, senders int) {
	stores := make([]ds.Batching, 10)
	clk := newTestClock()
	opts := func(i int) []domains.OverlayOption {
		stores[i] = dssync.MutexWrap(ds.NewMapDatastore())
		return append(mailOptions(clk), domains.WithDatastore(stores[i]))
	}
	ns := benchNodes(b, 10, opts, clk)
	ctx := context.Background()
	users := max(1, b.N/10)
	recips := make([]Recipient, users)
	for u := range recips {
		uk, _ := domains.GenerateUserKey()
		recips[u] = Recipient{AOR: mustAOR(fmt.Sprintf("sip:user%d@pastry", u)), UserKey: uk}
		if err := ns[u%10].mb.Publish(ctx, recips[u]); err != nil {
			b.Fatal(err)
		}
	}
	base := runtime.NumGoroutine() + 4
	settle(base)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan error, b.N)
	for i := range b.N {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			from := fmt.Sprintf("sip:sender%d@far", i%senders)
			// One writer per sender and recipient: a queue has one writer.
			m := msg(from, recips[(i/10)%users].AOR.String(), uint32(i), "a short text message, as people send them")
			if _, err := ns[i%senders].mb.Store(ctx, m); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	storeTime := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	settle(base)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	var recordBytes int64
	for _, s := range stores {
		res, err := s.Query(ctx, dsq.Query{Prefix: "/" + domains.NSMail})
		if err != nil {
			b.Fatal(err)
		}
		for e := range res.Next() {
			recordBytes += int64(len(e.Value))
		}
		_ = res.Close()
	}
	b.StartTimer()

	start = time.Now()
	delivered := 0
	for u, r := range recips {
		batch, err := ns[(u+5)%10].mb.Fetch(ctx, r)
		if err != nil {
			b.Fatal(err)
		}
		delivered += len(batch.Messages)
		if err := ns[(u+5)%10].mb.Ack(ctx, r, batch); err != nil {
			b.Fatal(err)
		}
	}
	fetchTime := time.Since(start)
	b.StopTimer()
	if delivered != b.N {
		b.Fatalf("delivered %d of %d", delivered, b.N)
	}
	b.ReportMetric(float64(b.N)/storeTime.Seconds(), "stored/s")
	b.ReportMetric(float64(delivered)/fetchTime.Seconds(), "delivered/s")
	b.ReportMetric(float64(recordBytes)/float64(len(stores)*b.N), "storer-B/msg")
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "heap-B/msg")
	b.ReportMetric(0, "ns/op")
}

// settle waits until the goroutines of lookups that went on after their
// quorum have ended (the count is back to base, or stops falling for a
// second; at most 30 s), then collects garbage.
func settle(base int) {
	low, since := runtime.NumGoroutine(), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		n := runtime.NumGoroutine()
		if n <= base {
			break
		}
		if n < low {
			low, since = n, time.Now()
		} else if time.Since(since) > time.Second {
			break
		}
	}
	runtime.GC()
	runtime.GC()
}

// benchNodes is testNodes with per-node overlay options.
func benchNodes(b *testing.B, n int, opts func(int) []domains.OverlayOption, clk *testClock) []*node {
	b.Helper()
	var ns []*node
	for i := range n {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = h.Close() })
		ov, err := domains.NewDomainOverlay(h, "pastry", opts(i)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ov.Close() })
		k := h.Peerstore().PrivKey(h.ID())
		mb, err := New(ov.DHT(), "pastry", k, WithClock(clk))
		if err != nil {
			b.Fatal(err)
		}
		ns = append(ns, &node{h: h, ov: ov, key: k, mb: mb})
	}
	for i, a := range ns {
		for _, c := range ns[i+1:] {
			connect(b, a.h, c.h)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for slices.ContainsFunc(ns, func(x *node) bool { return x.ov.RoutingTableSize() < n-1 }) {
		if time.Now().After(deadline) {
			b.Fatal("routing tables")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ns
}
