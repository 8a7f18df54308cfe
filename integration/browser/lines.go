package browser

import (
	"fmt"
	"strings"
	"sync"
)

// lockedLines keeps the last lines chromedp logged.
type lockedLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *lockedLines) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) >= 500 {
		l.lines = l.lines[1:]
	}
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *lockedLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
