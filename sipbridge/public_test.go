package sipbridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/integration/sipworld"
	"github.com/hiersip/hiersip/integration/softphone"
)

// TestInboundFromKamailio: a baresip registered at the Kamailio of example.test calls a
// baresip of the hiersip domain pastry; Kamailio routes pastry to the public address of
// pastry's proxy, which sends the call through the overlay to the callee's node; audio
// flows both ways and the callee's BYE goes back through the proxy and Kamailio. At the
// public address a request for another domain, a REGISTER and a Route outside get 403, a
// user nobody registered 404.
func TestInboundFromKamailio(t *testing.T) {
	for _, tp := range []string{"udp", "tcp", "tls"} {
		t.Run(tp, func(t *testing.T) { inboundFromKamailio(t, tp) })
	}
}

func inboundFromKamailio(t *testing.T, tp string) {
	dir := newMemDir()
	n1 := newMediaNodeWith(t, dir, "pastry")
	isMember := func(p peer.ID) bool { return p == n1.h.ID() }
	noDomain := func(ctx context.Context, a domains.AOR) (peer.AddrInfo, error) {
		return peer.AddrInfo{}, domains.ErrNotFound
	}
	conf, _ := tlsConf(t)
	// Kamailio's TLS port, for the dialog's requests towards it, has a certificate of its
	// own, made when the world starts (after the node, whose port the world's routes name):
	// verified against it once it exists.
	var kamailioRoots atomic.Pointer[x509.CertPool]
	client := &tls.Config{InsecureSkipVerify: true, // the verification is VerifyConnection's
		VerifyConnection: func(cs tls.ConnectionState) error {
			roots := kamailioRoots.Load()
			if roots == nil || len(cs.PeerCertificates) == 0 {
				return errors.New("no Kamailio certificate to verify against")
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"})
			return err
		}}
	n2 := newMediaNodeWith(t, dir, "pastry", WithPublic("127.0.0.1:0"), WithPublicTCP("127.0.0.1:0"), WithPublicTLS("127.0.0.1:0", conf),
		WithTLSClient(client), WithMembership(isMember), WithInterDomain(noDomain))
	connect(t, n1.testNode, n2.testNode)
	pub := n2.b.PublicAddr()
	if pub == "" || n2.b.PublicTCPAddr() == "" {
		t.Fatal("no public address")
	}
	route := pub
	switch tp {
	case "tcp":
		route = n2.b.PublicTCPAddr() + ";transport=tcp"
	case "tls":
		route = n2.b.PublicTLSAddr() + ";transport=tls"
	}
	// WebSocket: Kamailio with its TLS module, for tls
	w := sipworld.StartWith(t, sipworld.Options{Servers: 1, WebSocket: tp == "tls", Routes: map[string]string{"pastry": route}})
	k := w.Kamailios[0]
	if tp == "tls" {
		pem, err := os.ReadFile(k.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		kamailioRoots.Store(roots)
	}

	alice := softphone.Start(t, softphone.Account{AOR: "sip:alice@pastry", Node: n1.b.UDPAddr()}, softphone.Options{RTPPorts: "43000-43009"})
	bob := softphone.Start(t, softphone.Account{AOR: "sip:bob@" + sipworld.Domain, Node: k.Addr}, softphone.Options{RTPPorts: "43010-43019"})
	eventually(t, 20*time.Second, "alice to register at node 1", func() bool {
		b := n1.loc.binding("sip:alice@pastry")
		return b != nil && len(b.Contacts) > 0
	})
	ctx := ctxT(t, 60*time.Second)
	if err := bob.WaitFor(ctx, "200 OK"); err != nil {
		t.Fatalf("bob's registration at Kamailio: %v", err)
	}

	start := time.Now()
	if err := bob.Dial(ctx, "sip:alice@pastry"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*softphone.Baresip{alice, bob} {
		eventually(t, 20*time.Second, "the call from example.test to be established", func() bool {
			return strings.Contains(p.Output(), "Call established")
		})
	}
	t.Logf("call from example.test established in %v", time.Since(start).Round(time.Millisecond))
	eventually(t, 15*time.Second, "audio both ways through both relays", func() bool {
		s1, s2 := n1.r.Stats(), n2.r.Stats()
		return s1.ToPeer > 50 && s1.ToPhone > 50 && s2.ToPeer > 50 && s2.ToPhone > 50
	})
	s1, s2 := n1.r.Stats(), n2.r.Stats()
	t.Logf("node 1 relayed %d to the proxy, %d to alice; the proxy %d to node 1, %d towards bob", s1.ToPeer, s1.ToPhone, s2.ToPeer, s2.ToPhone)
	if err := alice.Hangup(ctx); err != nil { // BYE: node 1 → proxy → Kamailio → bob
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "bob to see alice's BYE", func() bool { return sawBye(bob.Output()) })
	if tp != "udp" {
		pt := n2.b.pubTCP
		if tp == "tls" {
			pt = n2.b.pubTLS
		}
		pt.mu.Lock()
		n := len(pt.conns)
		pt.mu.Unlock()
		if n == 0 {
			t.Fatalf("Kamailio's call did not come over the public %s address", tp)
		}
		return // the refusals below are the same over TCP and TLS
	}

	// What the public address refuses.
	c, err := net.Dial("udp", pub)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(method, ruri, extra string) string {
		t.Helper()
		la := c.LocalAddr().String()
		msg := strings.ReplaceAll(fmt.Sprintf(`%s %s SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK%d;rport
Max-Forwards: 70
To: <%s>
From: <sip:probe@example.test>;tag=p1
Call-ID: probe-%d@example.test
CSeq: 1 %s
Contact: <sip:probe@%s>
%sContent-Length: 0

`, method, ruri, la, time.Now().UnixNano(), ruri, time.Now().UnixNano(), method, la, extra), "\n", "\r\n")
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		for {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("%s %s: no answer: %v", method, ruri, err)
			}
			line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
			if !strings.Contains(line, " 100 ") {
				return line
			}
		}
	}
	for _, tc := range []struct{ method, ruri, extra, want string }{
		{"INVITE", "sip:someone@example.org", "", "403"},
		{"OPTIONS", "sip:someone@" + sipworld.Domain, "", "403"},
		{"REGISTER", "sip:pastry", "", "403"},
		{"INVITE", "sip:nobody@pastry", "", "404"},
		{"INVITE", "sip:alice@pastry", "Route: <sip:" + pub + ";lr>, <sip:192.0.2.9:5060;lr>\n", "403"},
		{"OPTIONS", "sip:" + pub, "", "200"},
	} {
		if got := ask(tc.method, tc.ruri, tc.extra); !strings.Contains(got, "SIP/2.0 "+tc.want) {
			t.Errorf("%s %s %q at the public address: %q, want %s", tc.method, tc.ruri, tc.extra, got, tc.want)
		}
	}
}

// TestOutboundFromPublic: a node with a public address sends requests to servers outside
// the overlay from it, with it in Via and Record-Route; requests to its own UAs keep the
// UA-facing address.
func TestOutboundFromPublic(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry", WithPublic("127.0.0.1:0"))
	u := &sip.Uri{Scheme: "sip", User: "bob", Host: "example.test"}
	ext := hop{uri: u, dst: "127.0.0.1:5999", dstTransport: "udp", ext: &outboundHop{}}
	p, err := n.b.pathTo(ext)
	if err != nil || !p.pub {
		t.Fatalf("path to a server outside: %+v %v, want the public socket", p, err)
	}
	ua := hop{uri: u, dst: "127.0.0.1:5999", dstTransport: "udp"}
	if p, _ := n.b.pathTo(ua); p.pub {
		t.Fatal("a local UA's path uses the public socket")
	}
	req := sip.NewRequest(sip.INVITE, *u)
	fwd := sip.NewRequest(sip.INVITE, *u)
	n.b.addUAVia(req, fwd, ext)
	_, pubPort, _ := net.SplitHostPort(n.b.PublicAddr())
	if v := fwd.Via(); v == nil || fmt.Sprint(v.Port) != pubPort {
		t.Fatalf("Via %v, want the public port %s", v, pubPort)
	}
	n.b.recordRoute(req, fwd, ext, "x")
	if rr := fwd.GetHeader("Record-Route"); rr == nil || !strings.Contains(rr.Value(), ":"+pubPort) {
		t.Fatalf("Record-Route %v, want the public port %s", rr, pubPort)
	}
}
