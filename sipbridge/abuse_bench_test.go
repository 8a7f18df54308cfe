//go:build linux

package sipbridge

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/sipua"
)

// BenchmarkAbuse floods a node while a well-behaved UA places 50 calls through it (5 at a
// time) to a UA at a second node, and reports per run: the calls completed, the CPU (in
// cores) and the peak RSS of the benchmark process (both nodes and both UAs; the flooder
// runs in a process of its own, a re-execution of the test binary), and the bytes the
// attacked node logged at info level. Floods: 30 KB datagrams of garbage, half-open SIP/TCP
// connections (half a request, then silence; reopened when closed), and /hiersip/sip/1.0.0
// streams holding half a message (reopened when reset), each from one source (one address,
// one peer identity) and from many (100 addresses, 50 identities). Each run is one
// iteration: -benchtime=3x gives three, and the figures reported are their medians.
func BenchmarkAbuse(b *testing.B) {
	for _, attack := range []string{"none", "garbage", "halfopen-tcp", "streams"} {
		for _, sources := range []int{1, 100} {
			if attack == "none" && sources > 1 {
				continue
			}
			name := attack
			if attack != "none" {
				name += "/" + map[int]string{1: "one-source", 100: "many-sources"}[sources]
			}
			b.Run(name, func(b *testing.B) { benchAbuse(b, attack, sources) })
		}
	}
}

type abuseRun struct {
	calls    int
	cores    float64
	rssMiB   float64
	logBytes int64
	elapsed  time.Duration
}

func benchAbuse(b *testing.B, attack string, sources int) {
	var runs []abuseRun
	for i := 0; i < b.N; i++ {
		runs = append(runs, abuseOnce(b, attack, sources))
	}
	med := func(f func(abuseRun) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(med(func(r abuseRun) float64 { return float64(r.calls) }), "calls-ok/50")
	b.ReportMetric(med(func(r abuseRun) float64 { return r.cores }), "cpu-cores")
	b.ReportMetric(med(func(r abuseRun) float64 { return r.rssMiB }), "rss-MiB")
	b.ReportMetric(med(func(r abuseRun) float64 { return float64(r.logBytes) }), "log-bytes")
	b.ReportMetric(med(func(r abuseRun) float64 { return r.elapsed.Seconds() }), "calls-s")
}

func abuseOnce(b *testing.B, attack string, sources int) abuseRun {
	b.StopTimer()
	dir := newMemDir()
	w := &countingWriter{}
	n1 := newTestNode(b, dir, "pastry", WithLogger(slog.New(slog.NewTextHandler(w, nil))))
	n2 := newTestNode(b, dir, "pastry")
	connect(b, n1, n2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ring := sipua.WithUAAnswer(sipua.AnswerAuto, 0)
	alice := newTestUA(b, "sip:alice@pastry", n1, ring)
	bob := newTestUA(b, "sip:bob@pastry", n2, ring)
	for _, u := range []*sipua.UA{alice, bob} {
		if _, err := u.Register(ctx, 0); err != nil {
			b.Fatal(err)
		}
	}
	var flooder *exec.Cmd
	if attack != "none" {
		flooder = exec.Command(os.Args[0], "-test.run=^TestAbuseFlooder$", "-test.v")
		flooder.Env = append(os.Environ(), "HIERSIP_FLOODER="+attack, "HIERSIP_FLOODER_SOURCES="+strconv.Itoa(sources),
			"HIERSIP_FLOODER_UDP="+n1.b.UDPAddr(), "HIERSIP_FLOODER_TCP="+n1.b.TCPAddr(),
			"HIERSIP_FLOODER_PEER="+n1.h.Addrs()[0].String()+"/p2p/"+n1.h.ID().String())
		flooder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		flooder.Stdout, flooder.Stderr = os.Stderr, os.Stderr
		if err := flooder.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = flooder.Process.Kill(); _ = flooder.Wait() }()
		eventually(b, 30*time.Second, "the flood to reach the node", func() bool {
			st := n1.b.Stats()
			return st.Unparsable+uint64(st.TCPConns)+uint64(st.Streams)+st.TCPTimedOut+st.StreamsTimedOut > 0
		})
	}
	runtime.GC()
	debug.FreeOSMemory() // what earlier runs left behind is not this run's
	log0 := w.n.Load()
	cpu0 := cpuTime()
	var peakRSS atomic.Int64
	stopRSS := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if r := rssBytes(); r > peakRSS.Load() {
				peakRSS.Store(r)
			}
			select {
			case <-stopRSS:
				return
			case <-t.C:
			}
		}
	}()
	b.StartTimer()
	start := time.Now()
	var ok atomic.Int64
	sem := make(chan struct{}, 5)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
			defer ccancel()
			c, err := alice.Call(cctx, "sip:bob@pastry")
			if err == nil {
				err = c.Hangup(cctx)
			}
			if err == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(stopRSS)
	r := abuseRun{calls: int(ok.Load()), cores: (cpuTime() - cpu0).Seconds() / elapsed.Seconds(),
		rssMiB: float64(peakRSS.Load()) / (1 << 20), logBytes: w.n.Load() - log0, elapsed: elapsed}
	st := n1.b.Stats()
	// close this run's nodes and UAs now, not when the benchmark ends
	for _, u := range []*sipua.UA{alice, bob} {
		_ = u.Close()
	}
	for _, n := range []*testNode{n1, n2} {
		_ = n.b.Close()
		_ = n.h.Close()
	}
	b.Logf("%s, %d sources: %d/50 calls in %v, %.2f cores, peak RSS %.0f MiB, %d log bytes; node: %d unparsable, %d TCP open (%d refused, %d timed out), %d streams open (%d refused, %d timed out)",
		attack, sources, r.calls, elapsed.Round(time.Millisecond), r.cores, r.rssMiB, r.logBytes,
		st.Unparsable, st.TCPConns, st.TCPRefused, st.TCPTimedOut, st.Streams, st.StreamsRefused, st.StreamsTimedOut)
	return r
}

// cpuTime is the CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssBytes is this process's resident set size.
func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestAbuseFlooder is BenchmarkAbuse's flooder process; it does nothing unless
// HIERSIP_FLOODER names an attack. It runs until killed.
func TestAbuseFlooder(t *testing.T) {
	attack := os.Getenv("HIERSIP_FLOODER")
	if attack == "" {
		t.Skip("the flooder of BenchmarkAbuse (HIERSIP_FLOODER unset)")
	}
	sources, _ := strconv.Atoi(os.Getenv("HIERSIP_FLOODER_SOURCES"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var wg sync.WaitGroup
	for i := 0; i < max(1, sources); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := fmt.Sprintf("127.0.0.%d", 2+i%200)
			switch attack {
			case "garbage":
				floodGarbage(ctx, src, os.Getenv("HIERSIP_FLOODER_UDP"))
			case "halfopen-tcp":
				floodHalfOpen(ctx, src, os.Getenv("HIERSIP_FLOODER_TCP"), 2000/max(1, sources))
			case "streams":
				if i < 50 {
					floodStreams(ctx, os.Getenv("HIERSIP_FLOODER_PEER"), 64)
				}
			}
		}()
	}
	wg.Wait()
}

func floodGarbage(ctx context.Context, src, dst string) {
	pc, err := net.ListenPacket("udp", src+":0")
	if err != nil {
		return
	}
	defer pc.Close()
	to, _ := net.ResolveUDPAddr("udp", dst)
	junk := garbage(30 << 10)
	for ctx.Err() == nil {
		_, _ = pc.WriteTo(junk, to)
	}
}

// floodHalfOpen keeps up to n connections from src open, each holding half a request.
func floodHalfOpen(ctx context.Context, src, dst string, n int) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
	slots := make(chan struct{}, n)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		go func() {
			defer func() { <-slots }()
			c, err := d.DialContext(ctx, "tcp", dst)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				return
			}
			defer c.Close()
			_, _ = c.Write([]byte("INVITE sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/TCP " + c.LocalAddr().String() + ";branch=z9hG4bKhalf\r\n"))
			_, _ = c.Read(make([]byte, 4096)) // until the node closes it
		}()
	}
}

// floodStreams keeps up to n streams to the peer at addr open from one fresh identity,
// each holding half a message.
func floodStreams(ctx context.Context, addr string, n int) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		return
	}
	defer h.Close()
	ai, err := peer.AddrInfoFromP2pAddr(ma.StringCast(addr))
	if err != nil || h.Connect(ctx, *ai) != nil {
		return
	}
	slots := make(chan struct{}, n)
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		go func(h host.Host) {
			defer func() { <-slots }()
			s, err := h.NewStream(ctx, ai.ID, ProtocolID)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				return
			}
			defer s.Reset()
			junk := make([]byte, 2000)
			_, _ = rand.Read(junk)
			_, _ = s.Write(append([]byte("OPTIONS sip:x@pastry SIP/2.0\r\nX-Junk: "), junk...))
			_, _ = s.Read(make([]byte, 4096)) // until the node resets it
		}(h)
	}
}
