package push

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrNotWoken: the device did not register again before the caller's
// deadline (Timer C); the branch counts as 480.
var ErrNotWoken = errors.New("push: the device did not wake in time")

// Pusher sends a notification (a *Client).
type Pusher interface {
	Push(ctx context.Context, n Notification) error
}

// DeviceKey names a device for a Waiter: its AOR and instance ID, or its
// push token when it sent no instance ID.
func DeviceKey(aor, instance string, p Params) string {
	if instance != "" {
		return aor + "\x00i\x00" + instance
	}
	return aor + "\x00t\x00" + p.Provider + "\x00" + p.PRID
}

// Waiter wakes sleeping devices: Wake pushes a device and waits until its
// registrar reports it registered again (Registered) or the caller's
// deadline passes. Callers that wait for one device at once share one
// push. It holds one goroutine per push in flight, owned by one
// WaitGroup; Close ends them.
type Waiter struct {
	p     Pusher
	max   int
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	mu    sync.Mutex
	waits map[string]*wake
	done  bool
}

type wake struct {
	woken   chan struct{} // closed when the device registered, or the push failed
	err     error         // the push's error, set before woken closes
	callers int
}

// DefaultMaxWakes bounds the devices being woken at once.
const DefaultMaxWakes = 1024

// NewWaiter returns a waiter pushing through p, waking at most maxWakes
// devices at once (0: DefaultMaxWakes).
func NewWaiter(p Pusher, maxWakes int) (*Waiter, error) {
	if p == nil {
		return nil, errors.New("push: NewWaiter: nil pusher")
	}
	if maxWakes <= 0 {
		maxWakes = DefaultMaxWakes
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Waiter{p: p, max: maxWakes, ctx: ctx, stop: stop, waits: map[string]*wake{}}, nil
}

// Wake pushes n to the device key (unless a push to it is in flight) and
// waits until Registered(key) or ctx ends (give it Timer C of the call as
// deadline). It returns nil when the device registered, the push's error
// when the gateway refused it (ErrInvalidToken: drop the device's push
// parameters), ErrNotWoken when ctx ended first.
func (w *Waiter) Wake(ctx context.Context, key string, n Notification) error {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return ErrClosed
	}
	wk := w.waits[key]
	if wk == nil {
		if len(w.waits) >= w.max {
			w.mu.Unlock()
			return ErrBusy
		}
		wk = &wake{woken: make(chan struct{})}
		w.waits[key] = wk
		var (
			pctx   context.Context
			cancel context.CancelFunc
		)
		if dl, ok := ctx.Deadline(); ok {
			pctx, cancel = context.WithDeadline(w.ctx, dl)
		} else {
			pctx, cancel = context.WithCancel(w.ctx)
		}
		w.wg.Go(func() {
			defer cancel()
			if err := w.p.Push(pctx, n); err != nil {
				w.finish(key, wk, fmt.Errorf("push: waking %s: %w", n.ID, err))
			}
		})
	}
	wk.callers++
	w.mu.Unlock()

	select {
	case <-wk.woken:
		return wk.err
	case <-ctx.Done():
		w.mu.Lock()
		if wk.callers--; wk.callers == 0 && w.waits[key] == wk {
			delete(w.waits, key) // nobody waits any more; a late registration wakes nothing
		}
		w.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrNotWoken, ctx.Err())
	case <-w.ctx.Done():
		return ErrClosed
	}
}

// finish ends wake wk of key with err (nil: the device registered).
func (w *Waiter) finish(key string, wk *wake, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waits[key] != wk {
		return
	}
	delete(w.waits, key)
	wk.err = err
	close(wk.woken)
}

// Registered tells the waiter that device key registered (again): every
// Wake waiting for it returns nil. The registrar calls it for every
// successful REGISTER of a device with push parameters.
func (w *Waiter) Registered(key string) {
	w.mu.Lock()
	wk := w.waits[key]
	w.mu.Unlock()
	if wk != nil {
		w.finish(key, wk, nil)
	}
}

// Waking returns how many devices are being woken.
func (w *Waiter) Waking() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.waits)
}

// Close cancels the pushes in flight, waits for them, and makes every
// waiting Wake return ErrClosed. A second Close returns an error wrapping
// net.ErrClosed.
func (w *Waiter) Close() error {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return ErrClosed
	}
	w.done = true
	w.mu.Unlock()
	w.stop()
	w.wg.Wait()
	return nil
}
