// Package pushtest is a push gateway for tests: an HTTP server on
// loopback that takes the push client's notifications (push.Body), records
// them and hands each to a function — a test's "device", which wakes and
// registers again — and answers with the statuses a test scripts.
package pushtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/hiersip/hiersip/push"
)

// Gateway is a test push gateway. Start it with New; URL is the address to
// configure; Close it when done.
type Gateway struct {
	*httptest.Server

	mu       sync.Mutex
	got      []push.Body
	statuses []int
	onPush   func(push.Body)
}

// New starts a gateway that calls onPush (may be nil) for every
// notification it takes.
func New(onPush func(push.Body)) *Gateway {
	g := &Gateway{onPush: onPush}
	g.Server = httptest.NewServer(http.HandlerFunc(g.serve))
	return g
}

// Respond scripts the statuses of the next requests, in order (a request
// beyond the script gets 200).
func (g *Gateway) Respond(statuses ...int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.statuses = append(g.statuses, statuses...)
}

// Received returns the notifications taken so far (with a 2xx).
func (g *Gateway) Received() []push.Body {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]push.Body(nil), g.got...)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "POST application/json", http.StatusBadRequest)
		return
	}
	var b push.Body
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<10)).Decode(&b); err != nil || b.V != 1 || b.PRID == "" {
		http.Error(w, "bad notification", http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	status := http.StatusOK
	if len(g.statuses) > 0 {
		status, g.statuses = g.statuses[0], g.statuses[1:]
	}
	if status < 300 {
		g.got = append(g.got, b)
	}
	g.mu.Unlock()
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "0")
	}
	w.WriteHeader(status)
	if f, ok := w.(http.Flusher); ok {
		f.Flush() // the client has its answer before the device wakes
	}
	if status < 300 && g.onPush != nil {
		g.onPush(b) // in the handler's goroutine: Close waits for it
	}
}
