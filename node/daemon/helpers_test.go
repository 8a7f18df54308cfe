package daemon

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// quiet discards the logs of test nodes.
var quiet = slog.New(slog.DiscardHandler)

// lockedBuffer is a bytes.Buffer for a logger on many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// eventually waits until cond returns nil, polling every 10 ms for up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
