package browser_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hiersip/hiersip/integration/browser"
)

// TestFakeMedia: the browser starts, loads a page from a loopback server,
// and gets a microphone without a prompt (the fake device), as a browser
// phone needs.
func TestFakeMedia(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`<!doctype html><title>media</title><p id=p>hello</p>`))
	}))
	defer srv.Close()
	b := browser.Start(t)
	if err := b.Do(20*time.Second, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	title, err := browser.Eval[string](b, 5*time.Second, `document.getElementById("p").textContent`)
	if err != nil || title != "hello" {
		t.Fatalf("page text %q, %v", title, err)
	}
	tracks, err := browser.Eval[int](b, 10*time.Second,
		`navigator.mediaDevices.getUserMedia({audio: true}).then(s => s.getAudioTracks().length)`)
	if err != nil || tracks != 1 {
		t.Fatalf("getUserMedia: %d audio tracks, %v", tracks, err)
	}
}
