package sipbridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/integration/sipworld"
	"github.com/hiersip/hiersip/integration/softphone"
	"github.com/hiersip/hiersip/sipdns"
	"github.com/hiersip/hiersip/sipua"
)

// outboundWorld is a pastry domain of two nodes — node 1 a member, node 2 its proxy,
// which knows no other overlay domain and goes out to ordinary SIP — and example.test, an
// ordinary SIP domain of two Kamailios found through the test's DNS server.
type outboundWorld struct {
	w        *sipworld.World
	n1, n2   *mediaNode
	stranger *testNode // a node of pastry that is not a member
}

func newOutboundWorld(t *testing.T) *outboundWorld {
	t.Helper()
	w := sipworld.Start(t, 2)
	r := w.Resolver(t)
	dir := newMemDir()
	var proxy atomic.Pointer[mediaNode]
	toProxy := func(ctx context.Context, a domains.AOR) (peer.AddrInfo, error) {
		n := proxy.Load()
		return peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()}, nil
	}
	var member atomic.Value // peer.ID of node 1
	isMember := func(p peer.ID) bool { return p == member.Load() }
	noDomain := func(ctx context.Context, a domains.AOR) (peer.AddrInfo, error) {
		return peer.AddrInfo{}, domains.ErrNotFound // the global overlay knows no domain but pastry
	}
	o := &outboundWorld{w: w}
	o.n1 = newMediaNodeWith(t, dir, "pastry", WithInterDomain(toProxy))
	member.Store(o.n1.h.ID())
	// the proxy's calls out leave from its public address (public.go)
	o.n2 = newMediaNodeWith(t, dir, "pastry", WithInterDomain(noDomain), WithMembership(isMember), WithOutbound(r, time.Second), WithPublic("127.0.0.1:0"))
	proxy.Store(o.n2)
	o.stranger = newTestNode(t, dir, "pastry", WithInterDomain(toProxy))
	connect(t, o.n1.testNode, o.n2.testNode)
	connect(t, o.stranger, o.n2.testNode)
	return o
}

// TestOutboundToKamailio: a baresip at a hiersip node calls a baresip registered at the
// Kamailio of example.test, found by NAPTR/SRV/A: the call goes through the domain's
// proxy, which record-routes it, audio flows both ways, and the callee's BYE comes back
// through Kamailio and the proxy. With the first Kamailio down the proxy fails over to
// the second. A domain that does not exist gets 604 at once; a node that is not a member
// of the domain cannot make the proxy send out (403).
func TestOutboundToKamailio(t *testing.T) {
	o := newOutboundWorld(t)
	k1, k2 := o.w.Kamailios[0], o.w.Kamailios[1]
	dave := softphone.Start(t, softphone.Account{AOR: "sip:dave@pastry", Node: o.n1.b.UDPAddr()}, softphone.Options{RTPPorts: "42000-42009"})
	bob := softphone.Start(t, softphone.Account{AOR: "sip:bob@" + sipworld.Domain, Node: k1.Addr}, softphone.Options{RTPPorts: "42010-42019"})
	eventually(t, 20*time.Second, "dave to register at node 1", func() bool {
		b := o.n1.loc.binding("sip:dave@pastry")
		return b != nil && len(b.Contacts) > 0
	})
	ctx := ctxT(t, 90*time.Second)
	if err := bob.WaitFor(ctx, "200 OK"); err != nil {
		t.Fatalf("bob's registration at Kamailio: %v", err)
	}

	start := time.Now()
	if err := dave.Dial(ctx, "sip:bob@"+sipworld.Domain); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*softphone.Baresip{dave, bob} {
		eventually(t, 20*time.Second, "the call to be established", func() bool {
			return strings.Contains(p.Output(), "Call established")
		})
	}
	t.Logf("call to example.test established in %v", time.Since(start).Round(time.Millisecond))
	eventually(t, 15*time.Second, "audio both ways through both relays", func() bool {
		s1, s2 := o.n1.r.Stats(), o.n2.r.Stats()
		return s1.ToPeer > 50 && s1.ToPhone > 50 && s2.ToPeer > 50 && s2.ToPhone > 50
	})
	s1, s2 := o.n1.r.Stats(), o.n2.r.Stats()
	t.Logf("node 1 relayed %d to the proxy, %d to dave; the proxy %d to node 1, %d to bob", s1.ToPeer, s1.ToPhone, s2.ToPeer, s2.ToPhone)
	if err := bob.Hangup(ctx); err != nil { // BYE: Kamailio → proxy → node 1 → dave
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "dave to see bob's BYE", func() bool {
		return sawBye(dave.Output())
	})
	eventually(t, 15*time.Second, "the media sessions to close", func() bool {
		return o.n1.r.Stats().Sessions == 0 && o.n2.r.Stats().Sessions == 0
	})

	// 604 for a domain that does not exist, at once.
	ring := sipua.WithUAAnswer(sipua.AnswerAuto, 10*time.Millisecond)
	alice := newTestUA(t, "sip:alice@pastry", o.n1.testNode, ring)
	start = time.Now()
	_, err := alice.Call(ctx, "sip:bob@nowhere.test")
	if err == nil || !strings.Contains(err.Error(), "604") {
		t.Fatalf("call to nowhere.test: %v, want 604", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("604 took %v", d)
	}
	t.Logf("604 for nowhere.test in %v", time.Since(start).Round(time.Millisecond))

	// A node that is not a member: 403, nothing goes out.
	mallory := newTestUA(t, "sip:mallory@pastry", o.stranger, ring)
	if _, err := mallory.Call(ctx, "sip:bob@"+sipworld.Domain); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("a stranger's call out: %v, want 403", err)
	}

	// Failover: sip1 down, carol registered at sip2.
	if err := k1.Stop(); err != nil {
		t.Fatal(err)
	}
	carol := softphone.Start(t, softphone.Account{AOR: "sip:carol@" + sipworld.Domain, Node: k2.Addr}, softphone.Options{RTPPorts: "42020-42029"})
	if err := carol.WaitFor(ctx, "200 OK"); err != nil {
		t.Fatalf("carol's registration at the second Kamailio: %v", err)
	}
	start = time.Now()
	if err := dave.Dial(ctx, "sip:carol@"+sipworld.Domain); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the call through the second Kamailio", func() bool {
		return strings.Contains(carol.Output(), "Call established") && strings.Count(dave.Output(), "Call established") >= 2
	})
	t.Logf("call through the second Kamailio established in %v (1 s without answer from the first)", time.Since(start).Round(time.Millisecond))
	if err := dave.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "carol to see the BYE", func() bool {
		return sawBye(carol.Output())
	})
}

// sawBye reports whether baresip's output tells of a call ended by the other side.
func sawBye(out string) bool {
	return strings.Contains(strings.ToLower(out), "connection reset by peer") ||
		strings.Contains(out, "Call closed") || strings.Contains(out, "terminated")
}

// TestOutboundTLS: example.test publishes SIP over TLS first (NAPTR SIPS+D2T): the proxy
// opens a TLS connection to Kamailio, verifying that its certificate names the SIP domain
// example.test (RFC 5922), and the call goes over it. A proxy whose roots do not hold
// Kamailio's certificate fails over to UDP.
func TestOutboundTLS(t *testing.T) {
	w := sipworld.StartWith(t, sipworld.Options{Servers: 1, WebSocket: true})
	k := w.Kamailios[0]
	pem, err := os.ReadFile(k.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	conf, _ := tlsConf(t)
	ctx := ctxT(t, 60*time.Second)
	bob, err := sipua.NewUA("sip:bob@"+sipworld.Domain, k.Addr, sipua.WithUALogger(testLogger(t)), sipua.WithUAAnswer(sipua.AnswerAuto, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bob.Close() })
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		roots   *x509.CertPool
		wantTLS bool
	}{{"trusted", roots, true}, {"untrusted", x509.NewCertPool(), false}} {
		t.Run(tc.name, func(t *testing.T) {
			r := w.Resolver(t, sipdns.WithTransports("tls", "udp"))
			n := newTestNode(t, newMemDir(), "pastry", WithTLS("127.0.0.1:0", conf),
				WithTLSClient(&tls.Config{RootCAs: tc.roots, MinVersion: tls.VersionTLS12}), WithOutbound(r, time.Second),
				WithInterDomain(func(context.Context, domains.AOR) (peer.AddrInfo, error) { return peer.AddrInfo{}, domains.ErrNotFound }))
			alice := newTestUA(t, "sip:alice@pastry", n)
			call, err := alice.Call(ctx, "sip:bob@"+sipworld.Domain)
			if err != nil {
				t.Fatalf("call over %s: %v", tc.name, err)
			}
			select {
			case <-bob.Incoming():
			case <-ctx.Done():
				t.Fatal("bob never saw the call")
			}
			ap := netip.MustParseAddrPort(k.WSSAddr)
			if open := n.b.streamConn(tpTLS, ap) != nil; open != tc.wantTLS {
				t.Fatalf("TLS connection to Kamailio open: %v, want %v", open, tc.wantTLS)
			}
			if err := call.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
