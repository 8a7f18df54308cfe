package sipbridge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/integration/browser"
	"github.com/hiersip/hiersip/integration/softphone"
	"github.com/hiersip/hiersip/web"
)

// TestBrowserPhonesOverWSS: the web package's JsSIP phone, in two tabs of headless
// Chromium (fake audio devices), registers over WSS at nodes of two domains with media
// relays on — alice at a node of pastry, bob at a node of can — and bob calls alice
// through pastry's proxy.
// The nodes leave the WebRTC SDP alone (no anchoring: DTLS fingerprint and ICE go end to
// end), and WebRTC's own statistics show audio flowing both ways; the relays opened no
// session.
func TestBrowserPhonesOverWSS(t *testing.T) {
	conf, _ := tlsConf(t)
	pastry, can := newMemDir(), newMemDir()
	var proxy atomic.Pointer[mediaNode]
	toPastry := func(ctx context.Context, a domains.AOR) (peer.AddrInfo, error) {
		if !a.InDomain("pastry") {
			return peer.AddrInfo{}, domains.ErrNotFound
		}
		p := proxy.Load()
		return peer.AddrInfo{ID: p.h.ID(), Addrs: p.h.Addrs()}, nil
	}
	// alice@pastry at node 1; pastry's proxy, node p; bob@can at node 2
	n1 := newMediaNodeWith(t, pastry, "pastry", WithWSS("127.0.0.1:0", conf))
	np := newMediaNodeWith(t, pastry, "pastry")
	proxy.Store(np)
	n2 := newMediaNodeWith(t, can, "can", WithWSS("127.0.0.1:0", conf), WithInterDomain(toPastry))
	connect(t, n1.testNode, np.testNode)
	connect(t, n2.testNode, np.testNode)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"peer_id": "x", "domain": "pastry", "role": "member", "registrations": [], "peers": [], "connections": []}`))
	})
	mux.Handle("/ui/", http.StripPrefix("/ui", web.Handler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	alice := browser.Start(t, browser.WithFlag("ignore-certificate-errors", true)) // the nodes' certificate is self-signed
	bob := alice.NewTab(t)
	open := func(b *browser.Browser, aor string, n *mediaNode) {
		t.Helper()
		q := url.Values{"wss": {"wss://" + n.b.WSSAddr()}, "aor": {aor},
			"target": {"sip:alice@pastry"}, "autoanswer": {"1"}}
		if err := b.Do(30*time.Second,
			chromedp.Navigate(srv.URL+"/ui/?"+q.Encode()),
			chromedp.Click(chromedp.ID("phone-register-button")),
		); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitFor(20*time.Second, `document.body.dataset.phone === "registered"`); err != nil {
			state, _ := browser.Eval[string](b, 5*time.Second, `document.getElementById("phone-state").textContent`)
			t.Fatalf("%s: %v (phone: %q)", aor, err, state)
		}
	}
	open(alice, "sip:alice@pastry", n1)
	open(bob, "sip:bob@can", n2)
	if reg := n1.b.reg.snapshotContacts("sip:alice@pastry"); len(reg) != 1 || reg[0].tp != "wss" || !invalidHost(reg[0].uri.Host) {
		t.Fatalf("alice's contact: %+v", reg)
	}

	if err := bob.Do(10*time.Second, chromedp.Click(chromedp.ID("phone-call-button"))); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]*browser.Browser{"alice": alice, "bob": bob} {
		if err := b.WaitFor(30*time.Second, `document.body.dataset.call === "established"`); err != nil {
			state, _ := browser.Eval[string](b, 5*time.Second, `document.getElementById("call-state").textContent`)
			t.Fatalf("%s: %v (call: %q)", name, err, state)
		}
	}
	for name, b := range map[string]*browser.Browser{"alice": alice, "bob": bob} {
		expr := `window.hiersip.phone.rtpStats().then(s => s && s.inbound > 50 && s.outbound > 50)`
		deadline := time.Now().Add(20 * time.Second)
		for {
			ok, err := browser.Eval[bool](b, 5*time.Second, expr)
			if err == nil && ok {
				break
			}
			if time.Now().After(deadline) {
				stats, _ := browser.Eval[map[string]int](b, 5*time.Second, `window.hiersip.phone.rtpStats()`)
				t.Fatalf("%s: no audio flowing: %v (%v)", name, stats, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		stats, _ := browser.Eval[map[string]int](b, 5*time.Second, `window.hiersip.phone.rtpStats()`)
		t.Logf("%s: RTP packets %v", name, stats)
	}
	for _, n := range []*mediaNode{n1, np, n2} {
		if s := n.r.Stats(); s.SessionsOpened != 0 {
			t.Fatalf("a relay anchored WebRTC media: %d sessions", s.SessionsOpened)
		}
	}
	if err := bob.Do(10*time.Second, chromedp.Click(chromedp.ID("phone-hangup-button"))); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitFor(15*time.Second, `document.body.dataset.call.startsWith("ended")`); err != nil {
		t.Errorf("alice never saw the BYE: %v", err)
	}
}

// TestBrowserToRTPPhone: a browser phone (WebRTC: DTLS-SRTP, ICE) calls a baresip (plain
// RTP) at another node. The node does not translate between the two: baresip finds no
// common audio codec in the WebRTC offer and rejects it (488, JsSIP's "Incompatible SDP"),
// the call ends at once, and no relay anchored it.
func TestBrowserToRTPPhone(t *testing.T) {
	conf, _ := tlsConf(t)
	dir := newMemDir()
	n1 := newMediaNodeWith(t, dir, "pastry")
	n2 := newMediaNodeWith(t, dir, "pastry", WithWSS("127.0.0.1:0", conf))
	connect(t, n1.testNode, n2.testNode)
	carol := softphone.Start(t, softphone.Account{AOR: "sip:carol@pastry", Node: n1.b.UDPAddr()}, softphone.Options{RTPPorts: "44000-44009"})
	eventually(t, 20*time.Second, "carol to register", func() bool {
		b := n1.loc.binding("sip:carol@pastry")
		return b != nil && len(b.Contacts) > 0
	})
	srv := httptest.NewServer(http.StripPrefix("/ui", web.Handler()))
	defer srv.Close()
	tab := browser.Start(t, browser.WithFlag("ignore-certificate-errors", true))
	q := url.Values{"wss": {"wss://" + n2.b.WSSAddr()}, "aor": {"sip:web@pastry"}, "target": {"sip:carol@pastry"}}
	if err := tab.Do(30*time.Second, chromedp.Navigate(srv.URL+"/ui/?"+q.Encode()), chromedp.Click(chromedp.ID("phone-register-button"))); err != nil {
		t.Fatal(err)
	}
	if err := tab.WaitFor(20*time.Second, `document.body.dataset.phone === "registered"`); err != nil {
		t.Fatal(err)
	}
	if err := tab.Do(10*time.Second, chromedp.Click(chromedp.ID("phone-call-button"))); err != nil {
		t.Fatal(err)
	}
	err := tab.WaitFor(40*time.Second, `(document.body.dataset.call || "").startsWith("ended") || document.body.dataset.call === "established"`)
	state, _ := browser.Eval[string](tab, 5*time.Second, `document.body.dataset.call`)
	t.Logf("browser → baresip: %q (%v); baresip: %s", state, err, lastLines(carol.Output(), 4))
	if state == "established" {
		stats, _ := browser.Eval[map[string]int](tab, 5*time.Second, `window.hiersip.phone.rtpStats()`)
		t.Logf("established: browser RTP %v", stats)
		_ = tab.Do(10*time.Second, chromedp.Click(chromedp.ID("phone-hangup-button")))
	}
	if err != nil || state != "ended (Incompatible SDP)" {
		t.Fatalf("browser → RTP phone: %q (%v), want it rejected as Incompatible SDP (488)", state, err)
	}
	if s1, s2 := n1.r.Stats(), n2.r.Stats(); s1.SessionsOpened != 0 || s2.SessionsOpened != 0 {
		t.Fatalf("a relay anchored the WebRTC offer: %d, %d", s1.SessionsOpened, s2.SessionsOpened)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}
