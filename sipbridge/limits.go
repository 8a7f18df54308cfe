package sipbridge

import (
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Limits bounds the load one source can put on a bridge: a user agent's source IP address
// on the UA-facing listeners (an IPv6 source counts per /64), or a node's peer ID on
// ProtocolID. Each source has token buckets of its own, so a flooder empties only its own
// buckets: the requests of other sources, and the ACKs and in-dialog requests of their
// established calls, go on being served.
//
// A rate of 0 turns that limit off; the zero Limits turns all rate limits off (bounds on
// concurrent transactions stay).
type Limits struct {
	// SourceRate and SourceBurst bound the initial (out-of-dialog) requests of one UA source
	// IP per second. Excess requests are answered 503 with Retry-After.
	SourceRate  float64
	SourceBurst int
	// PeerRate and PeerBurst do the same for one peer over ProtocolID. A domain's proxy
	// forwards for many callers: give peers more room than single user agents.
	PeerRate  float64
	PeerBurst int
	// ACKs, CANCELs, in-dialog requests (with a To tag) and responses draw on a second bucket
	// per source, DialogFactor times as large as the first (default 4): a source that floods
	// INVITEs still gets its established calls' ACKs and BYEs through.
	DialogFactor float64
	// AuthFailures wrong digest credentials per AuthWindow are checked per source IP; beyond
	// that, requests with credentials get 503 with Retry-After without being checked, so
	// that passwords cannot be guessed faster (0: no throttle).
	AuthFailures int
	AuthWindow   time.Duration
	// MaxSourceTx bounds the concurrent server transactions of one UA source IP, MaxUATx
	// those of all UA sources together (503 beyond). Peers are bounded by
	// WithMaxTransactionsPerPeer.
	MaxSourceTx int
	MaxUATx     int
	// MaxSources bounds the sources tracked at once (per kind); idle sources are forgotten
	// first.
	MaxSources int
}

// DefaultLimits are the limits of a bridge without WithLimits. A softphone sends a request
// a second at its busiest; 200 initial requests per second from one address leave room for
// an office behind one NAT. Load generators (sipp benchmarks) need more: raise or disable
// the limits for them.
func DefaultLimits() Limits {
	return Limits{
		SourceRate: 200, SourceBurst: 400,
		PeerRate: 1000, PeerBurst: 2000,
		DialogFactor: 4,
		AuthFailures: 10, AuthWindow: time.Minute,
		MaxSourceTx: 1024, MaxUATx: 16384,
		MaxSources: 10000,
	}
}

// Validate reports an inconsistent Limits (wrapping ErrBadOption).
func (l Limits) Validate() error {
	switch {
	case l.SourceRate < 0 || l.PeerRate < 0 || l.DialogFactor < 0 || l.AuthFailures < 0 || l.AuthWindow < 0 || l.MaxSources < 0:
		return fmt.Errorf("%w: negative limit", ErrBadOption)
	case l.SourceRate > 0 && l.SourceBurst < 1, l.PeerRate > 0 && l.PeerBurst < 1:
		return fmt.Errorf("%w: a rate limit needs a burst of at least 1", ErrBadOption)
	case l.AuthFailures > 0 && l.AuthWindow == 0:
		return fmt.Errorf("%w: auth failure limit needs a window", ErrBadOption)
	case l.MaxSourceTx < 1 || l.MaxUATx < 1:
		return fmt.Errorf("%w: transaction bounds must be positive", ErrBadOption)
	}
	return nil
}

// WithLimits sets the rate limits and transaction bounds (see Limits and DefaultLimits).
// A zero DialogFactor or MaxSources takes the default.
func WithLimits(l Limits) Option {
	return func(c *config) error {
		if err := l.Validate(); err != nil {
			return err
		}
		def := DefaultLimits()
		if l.DialogFactor == 0 {
			l.DialogFactor = def.DialogFactor
		}
		if l.MaxSources == 0 {
			l.MaxSources = def.MaxSources
		}
		c.limits = l
		return nil
	}
}

// Stats counts what the bridge's limits refused.
type Stats struct {
	// RateLimited: requests answered 503 because their source was over its rate.
	RateLimited uint64
	// Overloaded: requests answered 503 because of a bound on concurrent transactions.
	Overloaded uint64
	// Dropped: messages dropped without an answer (over the rate and the answer budget).
	Dropped uint64
	// AuthChecked: digest credentials verified; AuthFailed of them wrong.
	AuthChecked, AuthFailed uint64
	// AuthThrottled: requests with credentials refused unchecked (503), the source being
	// over its failure budget.
	AuthThrottled uint64
	// Abuse counts the other refusals and the connections and streams (see AbuseStats).
	AbuseStats
}

// Stats returns the counters of the bridge's limits.
func (b *Bridge) Stats() Stats {
	s := &b.lim.stats
	return Stats{
		RateLimited: s.rateLimited.Load(), Overloaded: s.overloaded.Load(), Dropped: s.dropped.Load(),
		AuthChecked: s.authChecked.Load(), AuthFailed: s.authFailed.Load(), AuthThrottled: s.authThrottled.Load(),
		AbuseStats: b.abuseStats(),
	}
}

func isUDP(req *sip.Request) bool {
	t := req.Transport()
	return t == "" || t == "UDP" || t == "udp"
}
