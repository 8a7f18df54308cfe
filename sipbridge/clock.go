package sipbridge

import (
	"context"
	"fmt"
	"time"

	"github.com/benbjohnson/clock"
)

// WithClock sets the clock of the bridge's record times, caches and periodic jobs
// (default the system clock; package node passes its Config.Clock): the expiry of
// registered contacts and their sweep, the times stored in the registration store and the
// pause between its saves, the NAT keep-alives, the lookup cache and the liveness of the
// bindings it routes by, the contact addresses of local UAs and the table of calls with
// media. These stay on the system clock, since the network runs in real time: network
// deadlines, the arrival times of messages and the rates and throttles measured on them
// (admission, digest failures, the log guard), the host's addresses and routes, trace
// times, and the transaction layer's RFC 3261 timers (transaction.go, txlayer.go; sipgo's
// parser and types read no clock).
func WithClock(clk clock.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return fmt.Errorf("%w: nil clock", ErrBadOption)
		}
		c.clock = clk
		return nil
	}
}

// now is the time of the bridge's clock (WithClock).
func (b *Bridge) now() time.Time { return b.cfg.clock.Now() }

// every calls f every d of the bridge's clock until ctx ends.
func (b *Bridge) every(ctx context.Context, d time.Duration, f func()) {
	t := b.cfg.clock.Ticker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
