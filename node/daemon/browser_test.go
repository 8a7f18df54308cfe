package daemon

import (
	"context"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/integration/browser"
	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/siptls"
)

// TestBrowserPhonesAtNodes: two hiersip nodes of two domains (pastry and can, each its own
// proxy, joined through the global overlay) serve the status page and the browser phone
// on their admin handlers (admin.web) and SIP over WSS. Two headless Chromium tabs load
// the page from their node, register alice@pastry and bob@can, and bob calls alice: the
// call crosses the domains, the browsers' WebRTC statistics count audio both ways, and
// alice's status page lists her registration with its .invalid contact and the call,
// confirmed (screenshot).
func TestBrowserPhonesAtNodes(t *testing.T) {
	dir := t.TempDir()
	cert, err := siptls.Certificate(siptls.WithSelfSigned(dir, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := siptls.Server(cert)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var seeds []string
	nodes := map[string]*node.Node{}
	for _, d := range []string{"pastry", "can"} {
		cfg := node.Config{Domain: d, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Logger: quiet, GlobalSeed: true,
			SIP:       &node.SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", Options: []sipbridge.Option{sipbridge.WithWSS("127.0.0.1:0", conf)}},
			Bootstrap: node.BootstrapConfig{DisableMDNS: true, DisableCache: true},
			Global:    node.BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: slices.Clone(seeds)}}
		n, err := node.New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.ID(), Addrs: n.Host().Addrs()})
		if err != nil || len(addrs) == 0 {
			t.Fatal(err)
		}
		seeds = append(seeds, addrs[0].String())
		nodes[d] = n
	}
	for d, n := range nodes {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := n.WaitReady(wctx, node.ReadyGlobal)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}

	web := Config{}
	web.Admin.Web = true
	alice := browser.Start(t, browser.WithFlag("ignore-certificate-errors", true)) // self-signed WSS certificate
	bob := alice.NewTab(t)
	open := func(b *browser.Browser, aor string, n *node.Node) {
		t.Helper()
		admin, err := node.NewAdminHandler(n, node.WithAdminToken("a token long enough to pass the check of its length"))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(web.adminHandler(admin))
		t.Cleanup(srv.Close)
		q := url.Values{"wss": {"wss://" + n.Bridge().WSSAddr()}, "aor": {aor}, "target": {"sip:alice@pastry"}, "autoanswer": {"1"}}
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
	open(alice, "sip:alice@pastry", nodes["pastry"])
	open(bob, "sip:bob@can", nodes["can"])

	// The call, retried while the overlays converge (a lookup may miss at first).
	deadline := time.Now().Add(60 * time.Second)
	for attempt := 1; ; attempt++ {
		if err := bob.Do(10*time.Second, chromedp.Click(chromedp.ID("phone-call-button"))); err != nil {
			t.Fatal(err)
		}
		err := bob.WaitFor(30*time.Second, `document.body.dataset.call === "established" || (document.body.dataset.call || "").startsWith("ended")`)
		state, _ := browser.Eval[string](bob, 5*time.Second, `document.body.dataset.call`)
		if err == nil && state == "established" {
			t.Logf("call established at attempt %d", attempt)
			break
		}
		if time.Now().After(deadline) {
			text, _ := browser.Eval[string](bob, 5*time.Second, `document.getElementById("call-state").textContent`)
			t.Fatalf("bob's call: %v (%q, %q)", err, state, text)
		}
		time.Sleep(time.Second) // the overlays converge on their own schedule; retry as a user would
	}
	if err := alice.WaitFor(30*time.Second, `document.body.dataset.call === "established"`); err != nil {
		t.Fatalf("alice: %v", err)
	}
	for name, b := range map[string]*browser.Browser{"alice": alice, "bob": bob} {
		expr := `window.hiersip.phone.rtpStats().then(s => s && s.inbound > 50 && s.outbound > 50)`
		deadline := time.Now().Add(20 * time.Second)
		for {
			ok, err := browser.Eval[bool](b, 5*time.Second, expr) // Eval awaits the promise
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
	// alice's status page, from her node's /status.
	if err := alice.WaitFor(10*time.Second, `document.getElementById("registrations").textContent.includes("sip:alice@pastry") && document.getElementById("registrations").textContent.includes(".invalid")`); err != nil {
		text, _ := browser.Eval[string](alice, 5*time.Second, `document.getElementById("registrations").textContent`)
		t.Fatalf("status page: %v (registrations: %q)", err, text)
	}
	if err := alice.WaitFor(10*time.Second, `(t => t.includes("sip:bob@can") && t.includes("sip:alice@pastry") && t.includes("confirmed"))(document.getElementById("calls").textContent)`); err != nil {
		text, _ := browser.Eval[string](alice, 5*time.Second, `document.getElementById("calls").textContent`)
		t.Fatalf("status page: %v (calls: %q)", err, text)
	}
	shot, err := alice.Screenshot(filepath.Join(t.TempDir(), "status.png"))
	if err != nil || len(shot) == 0 {
		t.Fatalf("screenshot: %v", err)
	}
	if d := os.Getenv("HIERSIP_SCREENSHOTS"); d != "" {
		_ = os.WriteFile(filepath.Join(d, "node-status-call.png"), shot, 0o644)
	}
	if err := bob.Do(10*time.Second, chromedp.Click(chromedp.ID("phone-hangup-button"))); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitFor(15*time.Second, `document.body.dataset.call.startsWith("ended")`); err != nil {
		t.Errorf("alice never saw the BYE: %v", err)
	}
}
