package web_test

import (
	"bytes"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hiersip/hiersip/integration/browser"
	"github.com/hiersip/hiersip/web"
)

// fakeStatus has the shape of node.Status (node/status.go), with a contact
// that tries to inject HTML, a call (node.StatusCall) and a media session.
const fakeStatus = `{
  "peer_id": "12D3KooWPeerOfTheNodeItself",
  "domain": "pastry",
  "addrs": ["/ip4/127.0.0.1/tcp/4001"],
  "joined": true, "ready": true, "ready_global": true, "is_proxy": true,
  "role": "proxy", "epoch": 3, "leader": "12D3KooWPeerOfTheNodeItself",
  "proxies": [{"peer_id": "12D3KooWPeerOfTheNodeItself", "utility": 0.9}],
  "candidates": [],
  "overlays": [{"name": "domain", "routing_table": 2}, {"name": "global", "routing_table": 1}],
  "registrations": [{"aor": "sip:carol@bupt.pastry", "expires": "2099-01-01T00:00:00Z",
     "contacts": [{"uri": "sip:carol@127.0.0.1:5070<img src=x onerror=alert(1)>", "expires": "2099-01-01T00:00:00Z"}]}],
  "sip": {"udp": "127.0.0.1:5060", "tcp": "127.0.0.1:5060"},
  "peers": [{"peer_id": "12D3KooWDirectPeer", "path": "direct", "direct": 1, "relayed": 0},
            {"peer_id": "12D3KooWRelayedPeer", "path": "relayed", "direct": 0, "relayed": 1}],
  "connections": [],
  "calls": [{"call_id": "a84b4c76e66710", "from": "sip:carol@bupt.pastry", "to": "sip:alice@pku.can", "state": "confirmed",
     "direction": "out", "started": "2026-11-30T11:59:00Z", "confirmed": "2026-11-30T11:59:05Z",
     "upstream": "phone 127.0.0.1:5070", "downstream": ["12D3KooWDirectPeer"], "media": true}],
  "media_sessions": [{"call_id": "a84b4c76e66710", "path": "relayed", "packets": 1500}],
  "time": "2026-11-30T12:00:00Z"
}`

// TestStatusPage loads the page in headless Chromium against a fake /status
// and checks that a person sees the node's role, peers with their path,
// registrations, calls and media sessions, that the injected HTML stayed
// text, and takes a screenshot.
func TestStatusPage(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(fakeStatus))
	})
	mux.Handle("/ui/", http.StripPrefix("/ui", web.Handler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := browser.Start(t)
	if err := b.Do(30*time.Second, chromedp.Navigate(srv.URL+"/ui/")); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitFor(15*time.Second, `document.body.dataset.status === "ok"`); err != nil {
		state, _ := browser.Eval[string](b, 5*time.Second, `document.getElementById("status-state").textContent`)
		t.Fatalf("%v (page says %q)", err, state)
	}
	text, err := browser.Eval[string](b, 5*time.Second, `document.getElementById("status").innerText`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"proxy (serving as proxy)", "pastry", "yes, for all domains", "12D3KooWPeerOfTheNodeItself",
		"12D3KooWDirectPeer", "direct", "12D3KooWRelayedPeer", "relayed",
		"sip:carol@bupt.pastry", "<img src=x onerror=alert(1)>",
		"a84b4c76e66710", "confirmed", "sip:alice@pku.can", "phone 127.0.0.1:5070", "anchored here", "1500",
		"domain: 2 peers, global: 1 peers", "udp 127.0.0.1:5060",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("status view lacks %q; it reads:\n%s", want, text)
		}
	}
	imgs, err := browser.Eval[int](b, 5*time.Second, `document.querySelectorAll("#status img").length`)
	if err != nil || imgs != 0 {
		t.Errorf("the contact's HTML became %d elements (%v): it must stay text", imgs, err)
	}
	phone, err := browser.Eval[string](b, 5*time.Second, `document.getElementById("phone-state").textContent + "|" + typeof window.hiersip.phone.rtpStats`)
	if err != nil || phone != "not registered|function" {
		t.Errorf("phone: %q, %v", phone, err)
	}

	path := filepath.Join(t.TempDir(), "status.png")
	shot, err := b.Screenshot(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if bnd := img.Bounds(); bnd.Dx() < 800 || bnd.Dy() < 400 || len(shot) < 10_000 {
		t.Errorf("screenshot %dx%d, %d bytes: too small to show the page", bnd.Dx(), bnd.Dy(), len(shot))
	}
	if dir := os.Getenv("HIERSIP_SCREENSHOTS"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "status-page.png"), shot, 0o644)
	}
	t.Logf("screenshot %s: %dx%d, %d bytes", path, img.Bounds().Dx(), img.Bounds().Dy(), len(shot))
}
