package election

import (
	"errors"
	"fmt"
	"time"
)

// Errors of the package. They are wrapped with detail; test them with errors.Is.
var (
	ErrBadConfig       = errors.New("election: invalid configuration")
	ErrBadMessage      = errors.New("election: malformed message")
	ErrMessageTooLarge = errors.New("election: message too large")
	ErrBadEpoch        = errors.New("election: epoch out of bounds")
)

// Default timings and sizes (see the package documentation).
const (
	DefaultProxies       = 1
	DefaultCandidates    = 2
	DefaultHelloInterval = 500 * time.Millisecond
	DefaultMissedHellos  = 3
)

// Config configures the election core. The zero value of a field means its
// default; DefaultConfig returns all defaults filled in.
type Config struct {
	// Proxies is the number of active proxies of the domain (default 1).
	Proxies int
	// Candidates is the length of the inactivated proxy list (default 2).
	Candidates int
	// Spares is the number of live bidders the leading proxy remembers to
	// refill the candidate list without a round of bids (default Candidates).
	Spares int
	// HelloInterval is the period of Hello and Announce (default 500 ms).
	HelloInterval time.Duration
	// HelloTimeout is how long a Hello waits for its ack before it counts as
	// missed (default HelloInterval/2). At most HelloInterval.
	HelloTimeout time.Duration
	// MissedHellos is the number of consecutive missed Hellos after which the
	// best live candidate takes over (default 3).
	MissedHellos int
	// ElectionTimeout is how long a node that is neither proxy nor candidate
	// waits without an Announce before it starts an election; also the quiet
	// period after start (default (MissedHellos+2)·HelloInterval).
	ElectionTimeout time.Duration
	// BidInterval rate-limits a peer's bids to the leading proxy
	// (default 4·HelloInterval).
	BidInterval time.Duration
	// Weights of the utility function.
	Weights Weights
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config { return Config{}.withDefaults() }

func (c Config) withDefaults() Config {
	if c.Proxies == 0 {
		c.Proxies = DefaultProxies
	}
	if c.Candidates == 0 {
		c.Candidates = DefaultCandidates
	}
	if c.Spares == 0 {
		c.Spares = c.Candidates
	}
	if c.HelloInterval == 0 {
		c.HelloInterval = DefaultHelloInterval
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = c.HelloInterval / 2
	}
	if c.MissedHellos == 0 {
		c.MissedHellos = DefaultMissedHellos
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = time.Duration(c.MissedHellos+2) * c.HelloInterval
	}
	if c.BidInterval == 0 {
		c.BidInterval = 4 * c.HelloInterval
	}
	c.Weights = c.Weights.withDefaults()
	return c
}

// Validate checks c with its defaults filled in; the error wraps
// ErrBadConfig and names the field at fault.
func (c Config) Validate() error { return c.withDefaults().validate() }

func (c Config) validate() error {
	switch {
	case c.Proxies < 1:
		return fmt.Errorf("%w: Proxies %d < 1", ErrBadConfig, c.Proxies)
	case c.Candidates < 0 || c.Spares < 0:
		return fmt.Errorf("%w: negative Candidates or Spares", ErrBadConfig)
	case c.Proxies+c.Candidates+c.Spares > MaxListed:
		return fmt.Errorf("%w: Proxies+Candidates+Spares %d > %d", ErrBadConfig, c.Proxies+c.Candidates+c.Spares, MaxListed)
	case c.HelloInterval <= 0:
		return fmt.Errorf("%w: HelloInterval %v", ErrBadConfig, c.HelloInterval)
	case c.HelloTimeout <= 0 || c.HelloTimeout > c.HelloInterval:
		return fmt.Errorf("%w: HelloTimeout %v not in (0, HelloInterval]", ErrBadConfig, c.HelloTimeout)
	case c.MissedHellos < 1:
		return fmt.Errorf("%w: MissedHellos %d < 1", ErrBadConfig, c.MissedHellos)
	case c.ElectionTimeout < c.HelloInterval:
		return fmt.Errorf("%w: ElectionTimeout %v < HelloInterval", ErrBadConfig, c.ElectionTimeout)
	case c.BidInterval <= 0:
		return fmt.Errorf("%w: BidInterval %v", ErrBadConfig, c.BidInterval)
	}
	return nil
}

// deadAfter is how long the leader keeps a member that stopped saying Hello.
func (c Config) deadAfter() time.Duration {
	return time.Duration(c.MissedHellos)*c.HelloInterval + c.HelloTimeout
}

// quietAfter is how long a node's leader must have been silent before the
// node follows a member of its roster that took over (a live leader
// announces every HelloInterval).
func (c Config) quietAfter() time.Duration { return c.HelloInterval + c.HelloTimeout }

// electionWindow is how long an election collects bids before the best
// bidder declares itself.
func (c Config) electionWindow() time.Duration { return 2 * c.HelloInterval }

// bidTTL is how long a broadcast bid counts in an election.
func (c Config) bidTTL() time.Duration { return 3 * c.HelloInterval }

// spareTTL is how long the leader keeps a bidder as a spare without a new bid.
func (c Config) spareTTL() time.Duration { return 3 * c.BidInterval }

// minFloorStep is how far the leader first lowers the bid floor when its lists
// are not full; the step doubles every HelloInterval until they are.
const minFloorStep = 1.0 / 4096

// maxBids bounds the bids a node remembers.
const maxBids = 1024
