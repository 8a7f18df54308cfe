package sipbridge

import (
	"crypto/tls"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/hiersip/hiersip/integration/softphone"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/siptls"
)

// tlsConf makes a self-signed certificate for 127.0.0.1 in a temporary directory and
// returns the server configuration and the certificate file (a client's CA file).
func tlsConf(t testing.TB) (*tls.Config, string) {
	t.Helper()
	dir := t.TempDir()
	cert, err := siptls.Certificate(siptls.WithSelfSigned(dir, "127.0.0.1", "localhost"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := siptls.Server(cert)
	if err != nil {
		t.Fatal(err)
	}
	return conf, filepath.Join(dir, siptls.CertFile)
}

// newMediaNodeWith is newMediaNode with bridge options.
func newMediaNodeWith(t testing.TB, dir *memDir, domain string, opts ...Option) *mediaNode {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := media.New(h, media.WithAddress(netip.MustParseAddr("127.0.0.1")),
		media.WithPorts(20000, 29999), media.WithLogger(testLogger(t)))
	if err != nil {
		_ = h.Close()
		t.Fatal(err)
	}
	loc := &memLocator{dir: dir, domain: domain, h: h}
	b, err := New(h, loc, append([]Option{WithListen("127.0.0.1:0"), WithLogger(testLogger(t)), WithMedia(r)}, opts...)...)
	if err != nil {
		_ = r.Close()
		_ = h.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		_ = r.Close()
		_ = h.Close()
	})
	return &mediaNode{testNode: &testNode{h: h, loc: loc, b: b}, r: r}
}

// TestBaresipTLS: baresip registers over TLS (digest inside TLS, the node's self-signed
// certificate checked against its file) at node 2; a baresip over UDP at node 1 calls it
// and the TLS phone calls back; audio flows both ways through the media relays of both
// nodes; requests for the TLS phone go on its own connection (it opens no TLS listener
// the node could dial).
func TestBaresipTLS(t *testing.T) {
	users := NewUsers()
	users.Add("carol", "pastry", "pw")
	conf, caFile := tlsConf(t)
	dir := newMemDir()
	n1 := newMediaNodeWith(t, dir, "pastry")
	n2 := newMediaNodeWith(t, dir, "pastry", WithUsers(users), WithDigestAlgorithms("MD5"), WithTLS("127.0.0.1:0", conf))
	connect(t, n1.testNode, n2.testNode)
	if n2.b.TLSAddr() == "" {
		t.Fatal("no TLS address")
	}

	carol := softphone.Start(t, softphone.Account{AOR: "sip:carol@pastry", Password: "pw", Node: n2.b.TLSAddr()},
		softphone.Options{Transport: "tls", RTPPorts: "41000-41009", Config: []string{"sip_cafile " + caFile}})
	dave := softphone.Start(t, softphone.Account{AOR: "sip:dave@pastry", Node: n1.b.UDPAddr()},
		softphone.Options{RTPPorts: "41010-41019"})
	for who, n := range map[string]*mediaNode{"sip:carol@pastry": n2, "sip:dave@pastry": n1} {
		eventually(t, 20*time.Second, who+" to register", func() bool {
			b := n.loc.binding(who)
			return b != nil && !b.Removed && len(b.Contacts) > 0
		})
	}
	reg := n2.b.reg.snapshotContacts("sip:carol@pastry")
	if len(reg) != 1 || reg[0].tp != "tls" || !reg[0].nat {
		t.Fatalf("carol's contact: %+v (want one over TLS, reached on its connection)", reg)
	}

	calls := 0
	call := func(from, to *softphone.Baresip, target string) {
		t.Helper()
		calls++
		before1, before2 := n1.r.Stats(), n2.r.Stats()
		if err := from.Dial(ctxT(t, 30*time.Second), target); err != nil {
			t.Fatal(err)
		}
		for _, p := range []*softphone.Baresip{from, to} {
			eventually(t, 20*time.Second, "the call to be established", func() bool {
				return strings.Count(p.Output(), "Call established") >= calls
			})
		}
		// 50 packets each way at each node: a second of audio at 20 ms.
		eventually(t, 15*time.Second, "audio both ways through both relays", func() bool {
			s1, s2 := n1.r.Stats(), n2.r.Stats()
			return s1.ToPeer-before1.ToPeer > 50 && s1.ToPhone-before1.ToPhone > 50 &&
				s2.ToPeer-before2.ToPeer > 50 && s2.ToPhone-before2.ToPhone > 50
		})
		s1, s2 := n1.r.Stats(), n2.r.Stats()
		t.Logf("%s: node 1 relayed %d to the peer, %d to its phone; node 2 %d and %d", target,
			s1.ToPeer-before1.ToPeer, s1.ToPhone-before1.ToPhone, s2.ToPeer-before2.ToPeer, s2.ToPhone-before2.ToPhone)
		if err := from.Hangup(ctxT(t, 30*time.Second)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, "the media sessions to close", func() bool {
			return n1.r.Stats().Sessions == 0 && n2.r.Stats().Sessions == 0
		})
		eventually(t, 15*time.Second, "the callee to see the BYE", func() bool {
			out := to.Output()
			return strings.Count(out, "terminated")+strings.Count(out, "Call closed") >= calls
		})
	}
	call(dave, carol, "sip:carol@pastry") // UDP → TLS
	call(carol, dave, "sip:dave@pastry")  // TLS → UDP
}

// snapshotContacts copies the contacts registered here for aor.
func (r *registrar) snapshotContacts(aor string) []contactEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []contactEntry
	if e := r.aors[aor]; e != nil {
		for _, c := range e.contacts {
			out = append(out, *c)
		}
	}
	return out
}
