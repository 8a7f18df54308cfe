package media

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRelayForward measures the forwarding path phone → relay A → libp2p stream →
// relay B → phone, in one process over loopback TCP (TLS or Noise, yamux): b.N G.711-sized
// RTP packets (172 bytes) spread over the sessions, at most 256 in flight (closed loop, so
// nothing is dropped for overload). It reports packets per second and the process's CPU
// time per packet, which includes both relays and the load generator (one send and one
// receive syscall per packet of its own).
func BenchmarkRelayForward(b *testing.B) {
	for _, sessions := range []int{1, 100} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) { benchForward(b, sessions) })
	}
}

func benchForward(b *testing.B, n int) {
	ha, hb := newHost(b), newHost(b)
	ra := newRelay(b, ha, WithPorts(32000, 35999), WithMaxSessions(4096))
	rb := newRelay(b, hb, WithPorts(36000, 39999), WithMaxSessions(4096))
	connectHosts(b, ha, hb)
	type leg struct {
		from  *net.UDPConn
		to    netip.AddrPort
		recv  *net.UDPConn
		count atomic.Int64
	}
	legs := make([]*leg, n)
	for i := range legs {
		key := Key{fmt.Sprintf("bench-%d", i), 0}
		sa, err := ra.Open(key, "")
		if err != nil {
			b.Fatal(err)
		}
		sb, err := rb.Open(key, ha.ID())
		if err != nil {
			b.Fatal(err)
		}
		if err := sa.SetRemote(hb.ID()); err != nil {
			b.Fatal(err)
		}
		pa, pb := newPhone(b, "127.0.0.1"), newPhone(b, "127.0.0.1")
		_ = pb.c.SetReadBuffer(4 << 20)
		sa.SetPhone(pa.addr(), netip.AddrPort{}, loopback)
		sb.SetPhone(pb.addr(), netip.AddrPort{}, loopback)
		port, _ := sa.Ports()
		legs[i] = &leg{from: pa.c, to: netip.AddrPortFrom(loopback, uint16(port)), recv: pb.c}
	}
	var received atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, l := range legs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				_ = l.recv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, _, err := l.recv.ReadFromUDPAddrPort(buf); err != nil {
					select {
					case <-stop:
						return
					default:
						continue
					}
				}
				received.Add(1)
			}
		}()
	}
	// Warm the streams up.
	for _, l := range legs {
		_, _ = l.from.WriteToUDPAddrPort(rtp(0), l.to)
	}
	deadline := time.Now().Add(10 * time.Second)
	for received.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	received.Store(0)
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	pkt := rtp(1)
	const window = 64
	var given int64 // packets given up for lost (a stall of 100 ms)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for stall := time.Now(); int64(i)-received.Load()-given >= window; {
			if time.Since(stall) > 100*time.Millisecond {
				given = int64(i) - received.Load()
				break
			}
			time.Sleep(20 * time.Microsecond)
		}
		l := legs[i%n]
		if _, err := l.from.WriteToUDPAddrPort(pkt, l.to); err != nil {
			b.Fatal(err)
		}
	}
	for last, at := received.Load(), time.Now(); received.Load() < int64(b.N) && time.Since(at) < 100*time.Millisecond; {
		if r := received.Load(); r != last {
			last, at = r, time.Now()
		}
		time.Sleep(50 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	close(stop)
	wg.Wait()
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	got := received.Load()
	b.ReportMetric(float64(got)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(max(got, 1)), "cpu-µs/pkt")
	b.ReportMetric(100*float64(int64(b.N)-got)/float64(b.N), "%lost")
	if testing.Verbose() {
		b.Logf("relay A: %+v", ra.Stats().Dropped)
		b.Logf("relay B: %+v", rb.Stats().Dropped)
	}
}
