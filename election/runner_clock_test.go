package election

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// clockDuties records the runner's clock at every call of its duties and
// fails the first failures promotions.
type clockDuties struct {
	clk      clock.Clock
	mu       sync.Mutex
	failures int
	promoted []time.Time // clock time of every Promote call
	last     Promotion   // what the last call received
	serving  bool
	demoted  int // Demote calls
}

func (d *clockDuties) Promote(_ context.Context, p Promotion) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.promoted = append(d.promoted, d.clk.Now())
	d.last = p
	if d.failures > 0 {
		d.failures--
		return errors.New("global overlay unreachable")
	}
	d.serving = true
	return nil
}

func (d *clockDuties) Demote(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.serving = false
	d.demoted++
	return nil
}

func (d *clockDuties) calls() ([]time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.promoted...), d.serving
}

// startClockRunner starts a lone runner (default timings: Hello every
// 500 ms, a quiet period of 2.5 s, an election window of 1 s) on a mock
// clock set to a realistic date.
func startClockRunner(t *testing.T, d Duties, clk *clock.Mock, opts ...Option) *Runner {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(h, ps, "clock.example", d, append([]Option{WithClock(clk)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.Close()
		cancel()
		_ = h.Close()
	})
	return r
}

// advanceUntil moves clk ahead in steps of step until cond holds, at most
// by limit of the clock; the real time it may take is bounded too, but the
// runner never waits on it.
func advanceUntil(t *testing.T, clk *clock.Mock, step, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for moved := time.Duration(0); !cond(); moved += step {
		if moved > limit || time.Now().After(deadline) {
			t.Fatalf("%s: not after %v of the clock", what, moved)
		}
		clk.Add(step)
	}
}

// TestRunnerElectsOnItsClock: a lone node becomes its domain's proxy after
// the quiet period and the election window of its clock, however fast that
// clock runs, and never before.
func TestRunnerElectsOnItsClock(t *testing.T) {
	clk := clock.NewMock()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk.Set(start)
	d := &clockDuties{clk: clk}
	r := startClockRunner(t, d, clk)
	cfg := DefaultConfig()
	earliest := start.Add(cfg.ElectionTimeout + cfg.electionWindow())

	// Before the quiet period and the window have passed on the clock the
	// node cannot lead, whatever real time has passed.
	for clk.Now().Add(cfg.HelloInterval / 10).Before(earliest) {
		clk.Add(cfg.HelloInterval / 10)
		if s := r.State(); s.Role == RoleProxy {
			t.Fatalf("proxy at %v of the clock, before %v", clk.Now().Sub(start), earliest.Sub(start))
		}
	}
	advanceUntil(t, clk, cfg.HelloInterval/10, 5*time.Second, "a lone node serving as proxy", func() bool {
		s := r.State()
		return s.Role == RoleProxy && s.Serving
	})
	calls, serving := d.calls()
	if len(calls) != 1 || !serving || calls[0].Before(earliest) {
		t.Fatalf("promotions at %v (serving %v), none before %v", calls, serving, earliest)
	}
	// The duties received the state they serve: the epoch, and this node as
	// the domain's proxy.
	d.mu.Lock()
	p := d.last
	d.mu.Unlock()
	if s := r.State(); p.Epoch != s.Epoch || len(p.Proxies) != 1 || p.Proxies[0] != r.h.ID() {
		t.Fatalf("promoted with %+v, state epoch %d, self %s", p, s.Epoch, r.h.ID())
	}
}

// TestRunnerRetriesDutiesOnItsClock: a failed promotion is retried a second
// of the runner's clock after it failed, not sooner, until it succeeds.
func TestRunnerRetriesDutiesOnItsClock(t *testing.T) {
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	d := &clockDuties{clk: clk, failures: 2}
	r := startClockRunner(t, d, clk)
	advanceUntil(t, clk, 100*time.Millisecond, 30*time.Second, "serving after two failed promotions", func() bool {
		s := r.State()
		_, serving := d.calls()
		return s.Serving && serving
	})
	calls, _ := d.calls()
	if len(calls) != 3 {
		t.Fatalf("%d promotions, want 3 (two failed)", len(calls))
	}
	for i := 1; i < len(calls); i++ {
		if gap := calls[i].Sub(calls[i-1]); gap < time.Second {
			t.Errorf("retry %d came %v of the clock after the failure, want at least 1s", i, gap)
		}
	}
}

// TestRunnerLogsDutyFailuresAsWarningsFirst: failures of the duties right
// after an election are warnings while the retries may mend them (a rival of
// the same epoch not yet stepped down); they become errors once they keep
// failing.
func TestRunnerLogsDutyFailuresAsWarningsFirst(t *testing.T) {
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	d := &clockDuties{clk: clk, failures: dutyFailuresLogged + 1}
	var logs syncBuffer
	r := startClockRunner(t, d, clk, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	advanceUntil(t, clk, 100*time.Millisecond, 60*time.Second, "serving after the failed promotions", func() bool {
		_, serving := d.calls()
		return r.State().Serving && serving
	})
	var warns, errs int
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, "election: duties failed") {
			continue
		}
		switch {
		case strings.Contains(line, "level=WARN"):
			warns++
		case strings.Contains(line, "level=ERROR"):
			errs++
		}
	}
	if want := dutyFailuresLogged - 1; warns != want || errs != 2 {
		t.Fatalf("%d warnings and %d errors for %d failures in a row, want %d and 2\n%s",
			warns, errs, dutyFailuresLogged+1, want, logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the runner's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunnerDemotesAfterAFailedPromotion: a node whose promotion failed (its
// duties may have done part of their work) is demoted when it stops being
// proxy, here by Close, although it never served.
func TestRunnerDemotesAfterAFailedPromotion(t *testing.T) {
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	d := &clockDuties{clk: clk, failures: 1 << 30}
	r := startClockRunner(t, d, clk)
	advanceUntil(t, clk, 100*time.Millisecond, 30*time.Second, "a failed promotion", func() bool {
		calls, _ := d.calls()
		return len(calls) > 0
	})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.serving || d.demoted != 1 {
		t.Fatalf("after Close: serving %v, %d demotions, want 1", d.serving, d.demoted)
	}
}
