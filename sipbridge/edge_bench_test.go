package sipbridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/integration/sipworld"
	"github.com/hiersip/hiersip/sipua"
)

// BenchmarkRegisterEdge measures REGISTERs answered per second at one node over TLS and
// WSS: on one connection kept open (a phone re-registering), and with a new connection
// (TCP, TLS handshake, WebSocket upgrade) per registration.
func BenchmarkRegisterEdge(b *testing.B) {
	conf, caFile := tlsConf(b)
	pem, err := os.ReadFile(caFile)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	cconf := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	lim := DefaultLimits()
	lim.SourceRate, lim.SourceBurst = 1e6, 1e6 // one source registers as fast as it can
	n := newTestNode(b, newMemDir(), "pastry", WithTLS("127.0.0.1:0", conf), WithWSS("127.0.0.1:0", conf), WithLimits(lim))
	register := func(callID string, cseq int, tp, host string) string {
		return strings.ReplaceAll(fmt.Sprintf(`REGISTER sip:pastry SIP/2.0
Via: SIP/2.0/%s %s;branch=z9hG4bKb%d
Max-Forwards: 70
To: <sip:bench@pastry>
From: <sip:bench@pastry>;tag=b1
Call-ID: %s
CSeq: %d REGISTER
Contact: <sip:bench@%s;transport=%s>;expires=3600
Content-Length: 0

`, tp, host, cseq, callID, cseq, host, strings.ToLower(tp)), "\n", "\r\n")
	}
	type conn struct {
		send func(string)
		recv func() string
	}
	dialTLS := func() (conn, func()) {
		c, err := tls.Dial("tcp", n.b.TLSAddr(), cconf)
		if err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReader(c)
		return conn{
			send: func(m string) {
				if _, err := io.WriteString(c, m); err != nil {
					b.Fatal(err)
				}
			},
			recv: func() string {
				line, err := r.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				for { // the rest of the header block (no body)
					l, err := r.ReadString('\n')
					if err != nil {
						b.Fatal(err)
					}
					if l == "\r\n" {
						return line
					}
				}
			},
		}, func() { c.Close() }
	}
	dialWSS := func() (conn, func()) {
		d := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: cconf}
		c, _, _, err := d.Dial(context.Background(), "wss://"+n.b.WSSAddr())
		if err != nil {
			b.Fatal(err)
		}
		return conn{
			send: func(m string) {
				if err := wsutil.WriteClientText(c, []byte(m)); err != nil {
					b.Fatal(err)
				}
			},
			recv: func() string {
				data, err := wsutil.ReadServerText(c)
				if err != nil {
					b.Fatal(err)
				}
				line, _, _ := strings.Cut(string(data), "\r\n")
				return line
			},
		}, func() { c.Close() }
	}
	for _, tc := range []struct {
		name, tp, host string
		dial           func() (conn, func())
	}{{"TLS", "TLS", "127.0.0.1:5099", dialTLS}, {"WSS", "WSS", "bench.invalid", dialWSS}} {
		for _, fresh := range []bool{false, true} {
			name := tc.name + "/reuse"
			if fresh {
				name = tc.name + "/connect"
			}
			b.Run(name, func(b *testing.B) {
				c, done := tc.dial()
				cseq, callID := 0, sip.GenerateTagN(16)
				start := time.Now()
				for i := 0; i < b.N; i++ {
					if fresh && i > 0 {
						done()
						c, done = tc.dial()
					}
					cseq++
					c.send(register(callID, cseq, tc.tp, tc.host))
					if line := c.recv(); !strings.HasPrefix(line, "SIP/2.0 200") {
						b.Fatalf("REGISTER: %q", line)
					}
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reg/s")
				done()
			})
		}
	}
}

// BenchmarkCallOut measures the setup of a call from a hiersip UA to a UA registered at
// Kamailio's example.test through the domain's proxy (INVITE → 200 OK), with the proxy's
// DNS cache flushed before each call (cold: NAPTR, SRV, A asked again) and kept (warm).
func BenchmarkCallOut(b *testing.B) {
	w := sipworld.Start(b, 1)
	r := w.Resolver(b)
	dir := newMemDir()
	var member atomic.Value
	n2 := newTestNode(b, dir, "pastry", WithOutbound(r, 0), WithMembership(func(p peer.ID) bool { return p == member.Load() }),
		WithInterDomain(func(context.Context, domains.AOR) (peer.AddrInfo, error) { return peer.AddrInfo{}, domains.ErrNotFound }))
	n1 := newTestNode(b, dir, "pastry", WithInterDomain(func(context.Context, domains.AOR) (peer.AddrInfo, error) {
		return peer.AddrInfo{ID: n2.h.ID(), Addrs: n2.h.Addrs()}, nil
	}))
	member.Store(n1.h.ID())
	connect(b, n1, n2)
	alice := newTestUA(b, "sip:alice@pastry", n1)
	bob, err := sipua.NewUA("sip:bob@"+sipworld.Domain, w.Kamailios[0].Addr,
		sipua.WithUALogger(testLogger(b)), sipua.WithUAAnswer(sipua.AnswerAuto, 0))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bob.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := bob.Register(ctx, 0); err != nil {
		b.Fatal(err)
	}
	for _, cold := range []bool{true, false} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				if cold {
					r.Flush()
				}
				start := time.Now()
				call, err := alice.Call(ctx, "sip:bob@"+sipworld.Domain)
				if err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				select {
				case <-bob.Incoming():
				case <-ctx.Done():
					b.Fatal("bob never saw the call")
				}
				if err := call.Hangup(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/setup")
		})
	}
}
