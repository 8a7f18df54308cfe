package web_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hiersip/hiersip/integration/browser"
	"github.com/hiersip/hiersip/integration/sipworld"
	"github.com/hiersip/hiersip/web"
)

// TestPhoneOverWSSAtKamailio: the page's JsSIP phone, in two tabs of
// headless Chromium, registers over WSS (RFC 7118) at Debian's Kamailio as
// alice and bob of example.test, bob calls alice, alice's tab answers, and
// WebRTC's own statistics show audio flowing both ways. Kamailio stands in
// for the WSS endpoint hiersip's bridge will offer.
func TestPhoneOverWSSAtKamailio(t *testing.T) {
	w := sipworld.StartWith(t, sipworld.Options{Servers: 1, WebSocket: true})
	k := w.Kamailios[0]

	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(fakeStatus))
	})
	mux.Handle("/ui/", http.StripPrefix("/ui", web.Handler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// Kamailio's WSS certificate is self-signed.
	alice := browser.Start(t, browser.WithFlag("ignore-certificate-errors", true))
	bob := alice.NewTab(t)
	open := func(b *browser.Browser, user string) {
		t.Helper()
		q := url.Values{"wss": {"wss://" + k.WSSAddr}, "aor": {"sip:" + user + "@" + sipworld.Domain},
			"target": {"sip:alice@" + sipworld.Domain}, "autoanswer": {"1"}}
		if err := b.Do(30*time.Second,
			chromedp.Navigate(srv.URL+"/ui/?"+q.Encode()),
			chromedp.Click(chromedp.ID("phone-register-button")),
		); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitFor(20*time.Second, `document.body.dataset.phone === "registered"`); err != nil {
			state, _ := browser.Eval[string](b, 5*time.Second, `document.getElementById("phone-state").textContent`)
			t.Fatalf("%s: %v (phone: %q)", user, err, state)
		}
	}
	open(alice, "alice")
	open(bob, "bob")

	if err := bob.Do(10*time.Second, chromedp.Click(chromedp.ID("phone-call-button"))); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]*browser.Browser{"alice": alice, "bob": bob} {
		if err := b.WaitFor(30*time.Second, `document.body.dataset.call === "established"`); err != nil {
			state, _ := browser.Eval[string](b, 5*time.Second, `document.getElementById("call-state").textContent`)
			t.Fatalf("%s: %v (call: %q)", name, err, state)
		}
	}
	// Audio both ways, by each browser's own WebRTC statistics.
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
	shot, err := bob.Screenshot(filepath.Join(t.TempDir(), "call.png"))
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("HIERSIP_SCREENSHOTS"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "phone-call.png"), shot, 0o644)
	}
	if err := bob.Do(10*time.Second, chromedp.Click(chromedp.ID("phone-hangup-button"))); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitFor(15*time.Second, `document.body.dataset.call.startsWith("ended")`); err != nil {
		t.Errorf("alice never saw the BYE: %v", err)
	}
}
