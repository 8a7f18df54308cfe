package sipbridge

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Logging that an outsider cannot turn into a disk-filling attack.
//
// Every log line of a bridge goes through a logGuard. It lets the first lines of each cause
// (the record's level and message) and source (its "from", "src", "peer", … attribute)
// through and suppresses the rest until the window ends; then it writes one line per cause
// saying how many were suppressed. String attributes are cut to maxLogValue bytes, and
// payloads (attributes "data", "msg", "payload", "body": whole SIP messages) are written
// only at debug level: above it they are replaced by their length. (The bridge has its own
// transports: sipgo's transport and transaction layers, which logged what peers trigger at
// ERROR through sipgo's package logger, are not used, and that logger is left alone.)

// Log guard settings.
const (
	logWindow    = 10 * time.Second // a cause's budget is per window
	logPerSource = 3                // lines of one cause and source per window
	logPerCause  = 20               // lines of one cause per window, all sources
	logMaxKeys   = 1024             // causes and sources tracked per window
	maxLogValue  = 256              // bytes of a string attribute
)

// payloadKeys are attributes holding message payloads.
var payloadKeys = map[string]bool{"data": true, "msg": true, "payload": true, "body": true}

// sourceKeys are attributes naming who caused a line.
var sourceKeys = []string{"from", "src", "source", "peer", "raddr", "addr"}

// logGuard is the slog.Handler of a bridge's logs: it wraps the handler of the logger given
// with WithLogger. Copies made by WithAttrs and WithGroup share one state.
type logGuard struct {
	next slog.Handler
	st   *guardState
}

type guardState struct {
	mu         sync.Mutex
	start      time.Time
	perKey     map[string]int       // cause|source → lines this window
	perCause   map[string]*causeCnt // cause → lines and suppressed this window
	suppressed atomic.Uint64        // all lines ever suppressed
	now        func() time.Time
	out        slog.Handler // where summaries go (the outermost handler's next)
}

type causeCnt struct {
	level      slog.Level
	msg        string
	lines      int
	suppressed int
	sources    int    // distinct sources suppressed (capped by the key table)
	example    string // one source that was suppressed
}

func newLogGuard(next slog.Handler) *logGuard {
	st := &guardState{perKey: map[string]int{}, perCause: map[string]*causeCnt{}, now: time.Now, out: next}
	st.start = st.now()
	return &logGuard{next: next, st: st}
}

func (g *logGuard) Enabled(ctx context.Context, l slog.Level) bool { return g.next.Enabled(ctx, l) }

func (g *logGuard) WithAttrs(as []slog.Attr) slog.Handler {
	return &logGuard{next: g.next.WithAttrs(as), st: g.st}
}

func (g *logGuard) WithGroup(name string) slog.Handler {
	return &logGuard{next: g.next.WithGroup(name), st: g.st}
}

func (g *logGuard) Handle(ctx context.Context, r slog.Record) error {
	source := ""
	r.Attrs(func(a slog.Attr) bool {
		for _, k := range sourceKeys {
			if a.Key == k {
				source = a.Value.String()
				return false
			}
		}
		return true
	})
	if host, _, ok := cutPort(source); ok {
		source = host // one source IP, whatever its ports
	}
	if !g.st.admit(r.Level, r.Message, source) {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	debug := r.Level <= slog.LevelDebug
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(cutAttr(a, debug))
		return true
	})
	return g.next.Handle(ctx, out)
}

// cutPort splits "host:port" (IPv4 or bracketed IPv6) without allocating much.
func cutPort(s string) (host, port string, ok bool) {
	i := len(s) - 1
	for i >= 0 && s[i] >= '0' && s[i] <= '9' {
		i--
	}
	if i <= 0 || i == len(s)-1 || s[i] != ':' {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// cutAttr bounds an attribute: payloads only at debug level, every string at maxLogValue bytes.
func cutAttr(a slog.Attr, debug bool) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		as := v.Group()
		out := make([]any, 0, len(as))
		for _, x := range as {
			out = append(out, cutAttr(x, debug))
		}
		return slog.Group(a.Key, out...)
	case slog.KindString, slog.KindAny:
		s := v.String()
		if payloadKeys[a.Key] && !debug {
			return slog.String(a.Key, "<"+strconv.Itoa(len(s))+" bytes, shown at debug level>")
		}
		if len(s) > maxLogValue {
			return slog.String(a.Key, truncate(s, maxLogValue))
		}
		if v.Kind() == slog.KindAny {
			return a
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// truncate cuts s to at most n bytes on a rune boundary and says how much was cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// admit decides whether a line of cause (level, msg) from source is written now.
func (st *guardState) admit(level slog.Level, msg, source string) bool {
	now := st.now()
	st.mu.Lock()
	var summaries []*causeCnt
	if now.Sub(st.start) >= logWindow {
		summaries = st.rollLocked(now)
	}
	cause := strconv.Itoa(int(level)) + "|" + msg
	c := st.perCause[cause]
	if c == nil {
		if len(st.perCause) >= logMaxKeys {
			st.mu.Unlock()
			st.suppressed.Add(1)
			st.emit(summaries)
			return false
		}
		c = &causeCnt{level: level, msg: msg}
		st.perCause[cause] = c
	}
	key := cause + "|" + source
	n, tracked := st.perKey[key]
	ok := c.lines < logPerCause && n < logPerSource
	switch {
	case ok:
		c.lines++
		if tracked || len(st.perKey) < logMaxKeys {
			st.perKey[key] = n + 1
		}
	default:
		c.suppressed++
		if n == logPerSource || !tracked {
			c.sources++
			if c.example == "" {
				c.example = source
			}
			if tracked {
				st.perKey[key] = n + 1 // counted once as a suppressed source
			}
		}
	}
	st.mu.Unlock()
	if !ok {
		st.suppressed.Add(1)
	}
	st.emit(summaries)
	return ok
}

// rollLocked starts a new window and returns the causes that had lines suppressed.
func (st *guardState) rollLocked(now time.Time) []*causeCnt {
	var out []*causeCnt
	for _, c := range st.perCause {
		if c.suppressed > 0 {
			out = append(out, c)
		}
	}
	clear(st.perCause)
	clear(st.perKey)
	st.start = now
	return out
}

// flush ends the window if it is over, writing its summaries; the bridge calls it
// periodically so that a flood that stopped is still summarised.
func (st *guardState) flush() {
	now := st.now()
	st.mu.Lock()
	var summaries []*causeCnt
	if now.Sub(st.start) >= logWindow {
		summaries = st.rollLocked(now)
	}
	st.mu.Unlock()
	st.emit(summaries)
}

func (st *guardState) emit(summaries []*causeCnt) {
	ctx := context.Background()
	for _, c := range summaries {
		if !st.out.Enabled(ctx, c.level) {
			continue
		}
		r := slog.NewRecord(st.now(), c.level, "suppressed similar log lines", 0)
		r.AddAttrs(slog.String("cause", truncate(c.msg, maxLogValue)), slog.Int("suppressed", c.suppressed),
			slog.Int("sources", c.sources), slog.String("example_source", truncate(c.example, maxLogValue)),
			slog.Duration("window", logWindow))
		_ = st.out.Handle(ctx, r)
	}
}

// flushLogs writes the log guard's summaries of a window that ended, until the bridge closes.
func (b *Bridge) flushLogs() {
	t := time.NewTicker(logWindow / 4)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			b.guard.st.flush()
			return
		case <-t.C:
			b.guard.st.flush()
		}
	}
}
