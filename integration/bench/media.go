package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdp "github.com/pion/sdp/v3"
	"golang.org/x/net/ipv4"

	"github.com/hiersip/hiersip/sipua"
)

// The media section: G.711-like streams (172-byte RTP packets, 50 per second each way per
// call) between a caller's and a callee's "phones" whose calls are anchored at two nodes,
// each node in a process of its own, over libp2p on loopback. The load generator sets the
// calls up with hiersip's UA (WithUASilent: SDP only) and drives the RTP itself from one
// socket per side with sendmmsg/recvmmsg (every session latches to it), each packet
// carrying its send time and call: packets per second, CPU time per packet of each node
// process (/proc), loss and one-way latency, stepping the number of calls up until 1 % or
// more is lost. The same generator sending phone to phone over plain UDP is the baseline
// of the latency the nodes add.

const (
	mediaPacket   = 172 // 12-byte RTP header + 160 bytes of G.711
	mediaInterval = 20 * time.Millisecond
	mediaWarmup   = 500 * time.Millisecond
	mediaMaxLoss  = 0.01
)

// Figure names of the media section.
const (
	nameMediaMax    = "media: max concurrent G.711 calls, < 1 % loss"
	nameMediaPPS    = "media: packets/s through each node at the max"
	nameMediaCPUA   = "media: CPU per packet, caller's node process"
	nameMediaCPUB   = "media: CPU per packet, callee's node process"
	nameMediaLatLo  = "media: one-way latency via the nodes, 10 calls"
	nameMediaDirLo  = "media: one-way latency phone to phone UDP, 10 calls"
	nameMediaLatHi  = "media: one-way latency via the nodes, at the max"
	nameMediaDirHi  = "media: one-way latency phone to phone UDP, at the max"
	nameMediaAddLo  = "media: latency added by the nodes, 10 calls"
	nameMediaAddHi  = "media: latency added by the nodes, at the max"
	nameMediaLossHi = "media: loss at the max"
)

// mediaCall is one call of the load: where each side's phone sends.
type mediaCall struct {
	toA, toB netip.AddrPort // the caller's node's port, the callee's node's port
	out, in  *sipua.Call
}

// mediaResult is one step of the load.
type mediaResult struct {
	calls          int
	sentAB, sentBA int64
	gotAB, gotBA   int64
	lat            []float64 // one-way latency samples, µs, both directions
	cpuA, cpuB     time.Duration
	elapsed        time.Duration
	generatorLate  time.Duration // how far the generator fell behind its schedule
}

func (m mediaResult) loss() float64 {
	l := 0.0
	for _, d := range [][2]int64{{m.sentAB, m.gotAB}, {m.sentBA, m.gotBA}} {
		if d[0] > 0 {
			l = max(l, float64(d[0]-d[1])/float64(d[0]))
		}
	}
	return l
}

// pps is the packets per second each node forwarded (both directions).
func (m mediaResult) pps() float64 {
	return float64(m.gotAB+m.gotBA) / m.elapsed.Seconds()
}

func (m mediaResult) cpuPerPacket(cpu time.Duration) float64 {
	n := m.gotAB + m.gotBA
	if n == 0 {
		return 0
	}
	return float64(cpu.Nanoseconds()) / 1000 / float64(n)
}

// mediaGen is the load generator: one socket for every caller's phone, one for every
// callee's.
type mediaGen struct {
	// cpu reads the CPU time of the caller's and the callee's node processes.
	cpu    func() (time.Duration, time.Duration)
	a, b   *net.UDPConn
	pa, pb *ipv4.PacketConn
	aAddr  netip.AddrPort
	bAddr  netip.AddrPort
}

func newMediaGen() (*mediaGen, error) {
	g := &mediaGen{}
	for _, c := range []**net.UDPConn{&g.a, &g.b} {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			g.close()
			return nil, err
		}
		_ = conn.SetReadBuffer(16 << 20)
		_ = conn.SetWriteBuffer(16 << 20)
		*c = conn
	}
	g.pa, g.pb = ipv4.NewPacketConn(g.a), ipv4.NewPacketConn(g.b)
	g.aAddr, g.bAddr = g.a.LocalAddr().(*net.UDPAddr).AddrPort(), g.b.LocalAddr().(*net.UDPAddr).AddrPort()
	return g, nil
}

func (g *mediaGen) close() {
	for _, c := range []*net.UDPConn{g.a, g.b} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// run sends 50 packets/s each way for every call for d (after a warm-up that lets the
// sessions latch) and counts what arrives. direct sends phone to phone, past the nodes.
func (g *mediaGen) run(ctx context.Context, calls []mediaCall, d time.Duration, direct bool) mediaResult {
	res := mediaResult{calls: len(calls)}
	dst := func(i int, ab bool) netip.AddrPort {
		switch {
		case direct && ab:
			return g.bAddr
		case direct:
			return g.aAddr
		case ab:
			return calls[i].toA
		}
		return calls[i].toB
	}
	start := time.Now()
	measureFrom, measureTo := start.Add(mediaWarmup), start.Add(mediaWarmup+d)
	var (
		wg             sync.WaitGroup
		gotAB, gotBA   atomic.Int64
		latMu          sync.Mutex
		lat            []float64
		recvDone       = make(chan struct{})
		sampleEvery    = max(1, len(calls)*50*int(d/time.Second)/100000) // about 100k latency samples
		sentAB, sentBA int64
	)
	recv := func(pc *ipv4.PacketConn, conn *net.UDPConn, got *atomic.Int64) {
		defer wg.Done()
		msgs := make([]ipv4.Message, 64)
		for i := range msgs {
			msgs[i].Buffers = [][]byte{make([]byte, 2048)}
		}
		var local []float64
		k := 0
		for {
			_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := pc.ReadBatch(msgs, 0)
			n = max(n, 0)
			now := time.Now()
			for _, m := range msgs[:n] {
				p := m.Buffers[0][:m.N]
				if len(p) < 28 {
					continue
				}
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(p[12:20])))
				if sent.Before(measureFrom) || !sent.Before(measureTo) {
					continue
				}
				got.Add(1)
				if k++; k%sampleEvery == 0 {
					local = append(local, float64(now.Sub(sent).Nanoseconds())/1000)
				}
			}
			if err != nil {
				select {
				case <-recvDone:
					latMu.Lock()
					lat = append(lat, local...)
					latMu.Unlock()
					return
				default:
				}
			}
		}
	}
	wg.Add(2)
	go recv(g.pa, g.a, &gotBA)
	go recv(g.pb, g.b, &gotAB)
	var cpu0A, cpu0B time.Duration
	// Each call sends in its own 20 ms slot; the generator wakes every millisecond and
	// sends what is due, in batches.
	slot := func(i int) time.Duration { return time.Duration(i) * mediaInterval / time.Duration(max(len(calls), 1)) }
	msgsA, msgsB := make([]ipv4.Message, 0, 64), make([]ipv4.Message, 0, 64)
	flush := func(pc *ipv4.PacketConn, ms []ipv4.Message) []ipv4.Message {
		for len(ms) > 0 {
			n, err := pc.WriteBatch(ms, 0)
			if err != nil {
				break
			}
			ms = ms[n:]
		}
		return ms[:0]
	}
	next := 0 // next packet to send: round r = next / len(calls), call next % len(calls)
	end := measureTo
	var cpuMeasured bool
	for ctx.Err() == nil && len(calls) > 0 {
		now := time.Now()
		if !cpuMeasured && now.After(measureFrom) && !direct {
			cpu0A, cpu0B = g.cpu()
			cpuMeasured = true
		}
		for {
			r, i := next/len(calls), next%len(calls)
			due := start.Add(time.Duration(r)*mediaInterval + slot(i))
			if due.After(now) || !due.Before(end) {
				break
			}
			if late := now.Sub(due); late > res.generatorLate {
				res.generatorLate = late
			}
			for _, ab := range []bool{true, false} {
				b := make([]byte, mediaPacket)
				b[0], b[1] = 0x80, 0
				binary.BigEndian.PutUint16(b[2:], uint16(r))
				binary.BigEndian.PutUint32(b[8:], uint32(i))
				binary.BigEndian.PutUint64(b[12:], uint64(time.Now().UnixNano()))
				a := dst(i, ab)
				m := ipv4.Message{Buffers: [][]byte{b}, Addr: net.UDPAddrFromAddrPort(a)}
				inWindow := !due.Before(measureFrom)
				if ab {
					if msgsA = append(msgsA, m); len(msgsA) == cap(msgsA) {
						msgsA = flush(g.pa, msgsA)
					}
					if inWindow {
						sentAB++
					}
				} else {
					if msgsB = append(msgsB, m); len(msgsB) == cap(msgsB) {
						msgsB = flush(g.pb, msgsB)
					}
					if inWindow {
						sentBA++
					}
				}
			}
			next++
		}
		msgsA, msgsB = flush(g.pa, msgsA), flush(g.pb, msgsB)
		if !now.Before(end) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	res.elapsed = time.Since(measureFrom)
	if !direct && cpuMeasured {
		a, b := g.cpu()
		res.cpuA, res.cpuB = a-cpu0A, b-cpu0B
	}
	time.Sleep(300 * time.Millisecond) // the last packets arrive
	close(recvDone)
	wg.Wait()
	res.sentAB, res.sentBA, res.gotAB, res.gotBA, res.lat = sentAB, sentBA, gotAB.Load(), gotBA.Load(), lat
	res.elapsed = d
	return res
}

// media runs the media section.
func (r *runner) media(ctx context.Context) error {
	blocks := []string{"10000-29999", "30000-49999"}
	cl, err := r.startCluster(ctx, "media", clusterOpts{domains: 1, perDomain: 2, members: 1, mediaSessions: 20000, mediaPerPeer: 20000,
		mediaPorts: func(i int) string { return blocks[i%2] }})
	if err != nil {
		return err
	}
	defer cl.Close()
	a, b := cl.nodes["pastry"][0], cl.nodes["pastry"][1]
	caller, err := sipua.NewUA("sip:caller@pastry", a.sip, sipua.WithUASilent(), sipua.WithUALogger(quietLog()))
	if err != nil {
		return err
	}
	defer caller.Close()
	callee, err := sipua.NewUA("sip:callee@pastry", b.sip, sipua.WithUASilent(),
		sipua.WithUAAnswer(sipua.AnswerAuto, 0), sipua.WithUALogger(quietLog()))
	if err != nil {
		return err
	}
	defer callee.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := callee.Register(rctx, time.Hour); err != nil {
		return err
	}
	answered := map[string]*sipua.Call{}
	var amu sync.Mutex
	drainCtx, stopDrain := context.WithCancel(ctx)
	defer stopDrain()
	go func() {
		for {
			select {
			case c := <-callee.Incoming():
				amu.Lock()
				answered[c.CallID] = c
				amu.Unlock()
			case <-drainCtx.Done():
				return
			}
		}
	}()
	g, err := newMediaGen()
	if err != nil {
		return err
	}
	defer g.close()
	g.cpu = func() (time.Duration, time.Duration) { return cpuTime(a.pid()), cpuTime(b.pid()) }
	// One call until it goes through: the caller's node finds the callee's binding.
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := placeMediaCall(ctx, caller, answered, &amu)
		if err == nil {
			hangupAll([]mediaCall{c})
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("first call: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var calls []mediaCall
	defer func() { hangupAll(calls) }()
	grow := func(n int) error {
		var mu sync.Mutex
		var errs []error
		var wg sync.WaitGroup
		work := make(chan struct{}, n-len(calls))
		for range n - len(calls) {
			work <- struct{}{}
		}
		close(work)
		for range 16 {
			wg.Go(func() {
				for range work {
					c, err := placeMediaCall(ctx, caller, answered, &amu)
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else {
						calls = append(calls, c)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	d := r.cfg.MediaDuration
	var best, at10 *mediaResult
	var steps []string
	for _, n := range r.cfg.MediaCalls {
		if err := grow(n); err != nil {
			return fmt.Errorf("setting up %d calls: %w", n, err)
		}
		var pwg sync.WaitGroup
		if r.cfg.Profile {
			for _, h := range []*procNode{a, b} {
				pwg.Go(func() {
					_ = h.profile(ctx, "profile", d, filepath.Join(r.dir, fmt.Sprintf("media-%d-%s.pprof", n, h.name)))
				})
			}
		}
		res := g.run(ctx, calls, d, false)
		pwg.Wait()
		steps = append(steps, fmt.Sprintf("%d:%.2f%%", n, 100*res.loss()))
		sa, sb := mediaStats(ctx, a), mediaStats(ctx, b)
		r.log.Info("bench: media step", "calls", n, "loss", res.loss(), "pps", int(res.pps()),
			"cpuA", res.cpuA, "cpuB", res.cpuB, "generator_late", res.generatorLate,
			"nodeA", sa, "nodeB", sb)
		if res.loss() >= mediaMaxLoss {
			break
		}
		if at10 == nil {
			at10 = &res
		}
		best = &res
	}
	if best == nil {
		return fmt.Errorf("no step with < 1 %% loss (%s)", strings.Join(steps, " "))
	}
	method := fmt.Sprintf("steps (calls:loss) %s, %v each, 2 node processes on loopback", strings.Join(steps, " "), d)
	r.add(SectionMedia, nameMediaMax, "calls", method, []float64{float64(best.calls)})
	r.add(SectionMedia, nameMediaPPS, "pkt/s", fmt.Sprintf("%d calls × 50 pkt/s × 2 directions, received", best.calls), []float64{best.pps()})
	r.add(SectionMedia, nameMediaCPUA, "µs", "utime+stime of the node process / packets it forwarded (both directions), at the max", []float64{best.cpuPerPacket(best.cpuA)})
	r.add(SectionMedia, nameMediaCPUB, "µs", "the same, callee's node", []float64{best.cpuPerPacket(best.cpuB)})
	r.add(SectionMedia, nameMediaLossHi, "%", "the worse direction", []float64{100 * best.loss()})
	for _, st := range []struct {
		res             *mediaResult
		via, dir, added string
	}{{at10, nameMediaLatLo, nameMediaDirLo, nameMediaAddLo}, {best, nameMediaLatHi, nameMediaDirHi, nameMediaAddHi}} {
		direct := g.run(ctx, calls[:st.res.calls], d, true)
		fv := r.add(SectionMedia, st.via, "µs", fmt.Sprintf("%d calls, both directions, generator clock", st.res.calls), st.res.lat)
		fd := r.add(SectionMedia, st.dir, "µs", "the same generator, phone socket to phone socket", direct.lat)
		p99v, p99d := pctl(st.res.lat, 0.99), pctl(direct.lat, 0.99)
		r.rep.Figures = append(r.rep.Figures, Figure{Section: SectionMedia, Name: st.added, Unit: "µs",
			Method: fmt.Sprintf("via − direct per quantile; p99 %s (via %s, direct %s)", num(p99v-p99d), num(p99v), num(p99d)),
			Median: fv.Median - fd.Median, P95: fv.P95 - fd.P95, P99: p99v - p99d, N: 1})
	}
	hangupAll(calls)
	calls = nil
	for _, n := range []*procNode{a, b} {
		var left float64
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			m, err := n.metrics(ctx)
			if left = m["hiersip_media_sessions"]; err == nil && left == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if left != 0 {
			return fmt.Errorf("%s: %.0f media sessions left after hanging up", n.name, left)
		}
	}
	return nil
}

// mediaStats summarises a node's media counters for the log.
func mediaStats(ctx context.Context, n *procNode) string {
	m, err := n.metrics(ctx)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("sessions=%.0f packets=%.0f dropped=%.0f", m["hiersip_media_sessions"], m["hiersip_media_packets_total"], m["hiersip_media_dropped_total"])
}

// placeMediaCall places one call and returns the nodes' ports each side was given.
func placeMediaCall(ctx context.Context, caller *sipua.UA, answered map[string]*sipua.Call, mu *sync.Mutex) (mediaCall, error) {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := caller.Call(cctx, "sip:callee@pastry")
	if err != nil {
		return mediaCall{}, err
	}
	c := mediaCall{out: out}
	if c.toA, err = sdpAddr(out.Responses[len(out.Responses)-1].Body()); err != nil {
		return c, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		mu.Lock()
		in := answered[out.CallID]
		mu.Unlock()
		if in != nil {
			c.in = in
			break
		}
		if time.Now().After(deadline) {
			return c, errors.New("the callee's side of a call never showed")
		}
		time.Sleep(time.Millisecond)
	}
	c.toB, err = sdpAddr(c.in.Invite.Body())
	return c, err
}

// sdpAddr is the address of an SDP's first m-line.
func sdpAddr(body []byte) (netip.AddrPort, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return netip.AddrPort{}, fmt.Errorf("bench: SDP: %w", err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return netip.AddrPort{}, errors.New("bench: SDP without m-line")
	}
	md := sd.MediaDescriptions[0]
	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	if ci == nil || ci.Address == nil {
		return netip.AddrPort{}, errors.New("bench: SDP without c=")
	}
	ip, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bench: SDP c=: %w", err)
	}
	return netip.AddrPortFrom(ip, uint16(md.MediaName.Port.Value)), nil
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(discard{}, nil)) }

func hangupAll(calls []mediaCall) {
	var wg sync.WaitGroup
	work := make(chan mediaCall, len(calls))
	for _, c := range calls {
		work <- c
	}
	close(work)
	for range 16 {
		wg.Go(func() {
			for c := range work {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = c.out.Hangup(ctx)
				cancel()
			}
		})
	}
	wg.Wait()
}
