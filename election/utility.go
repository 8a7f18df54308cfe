package election

import (
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Reachability says whether other nodes can dial this node directly. It comes
// from libp2p's AutoNAT (event.EvtLocalReachabilityChanged) unless the
// operator forces it.
type Reachability int

// Reachability values. The zero value is ReachabilityUnknown: AutoNAT has not
// decided yet (always the case on loopback and private networks).
const (
	ReachabilityUnknown Reachability = iota
	ReachabilityPublic
	ReachabilityPrivate
)

// String returns "unknown", "public" or "private".
func (r Reachability) String() string {
	switch r {
	case ReachabilityPublic:
		return "public"
	case ReachabilityPrivate:
		return "private"
	default:
		return "unknown"
	}
}

// Metrics are the inputs of the utility function (draft §6.1). The runner
// measures online time and CPU; bandwidth is configured; reachability comes
// from AutoNAT or the operator.
type Metrics struct {
	Online       time.Duration // time since the node joined the domain
	Bandwidth    float64       // usable upstream bandwidth in bits per second
	CPU          float64       // CPU capacity in cores (runtime.NumCPU() × relative speed)
	Reachability Reachability
	// Weight is the operator's preference for this node, a multiplier on the
	// measured score: 2 makes the node twice as attractive within its
	// reachability tier. Zero or negative means 1.
	Weight float64
	// OptOut keeps the node from ever becoming a proxy or candidate.
	OptOut bool
}

// Weights configure the utility function. The zero value of a field means its
// default (see DefaultWeights).
type Weights struct {
	Online    float64 // relative weight of online time; default 0.4
	Bandwidth float64 // relative weight of bandwidth; default 0.3
	CPU       float64 // relative weight of CPU capacity; default 0.3

	OnlineHalf    time.Duration // online time that scores half of its maximum; default 1 h
	BandwidthHalf float64       // bandwidth (bit/s) that scores half; default 10 Mbit/s
	CPUHalf       float64       // cores that score half; default 2
}

// DefaultWeights returns the documented default weights.
func DefaultWeights() Weights {
	return Weights{
		Online:        0.4,
		Bandwidth:     0.3,
		CPU:           0.3,
		OnlineHalf:    time.Hour,
		BandwidthHalf: 10e6,
		CPUHalf:       2,
	}
}

func (w Weights) withDefaults() Weights {
	d := DefaultWeights()
	if w.Online <= 0 && w.Bandwidth <= 0 && w.CPU <= 0 {
		w.Online, w.Bandwidth, w.CPU = d.Online, d.Bandwidth, d.CPU
	}
	if w.OnlineHalf <= 0 {
		w.OnlineHalf = d.OnlineHalf
	}
	if w.BandwidthHalf <= 0 {
		w.BandwidthHalf = d.BandwidthHalf
	}
	if w.CPUHalf <= 0 {
		w.CPUHalf = d.CPUHalf
	}
	return w
}

// Utility tiers: a node's utility is its tier plus a score in [0, 1), so a
// node of a higher tier always outranks one of a lower tier.
const (
	tierPrivate = 0
	tierUnknown = 1
	tierPublic  = 2

	// NotEligible is the utility of a node that opted out.
	NotEligible = -1.0
	// MaxUtility bounds every utility; larger values on the wire are rejected.
	MaxUtility = 3.0
)

// Utility returns the node's score U = f(online, bandwidth, cpu,
// reachability, weight) (draft §6.1):
//
//	s(x, half)  = x / (x + half)                      saturating, in [0, 1)
//	base        = (wo·s(online) + wb·s(bw) + wc·s(cpu)) / (wo + wb + wc)
//	score       = base·weight / (1 + base·weight)     in [0, 1)
//	U           = tier + score                        tier: private 0, unknown 1, public 2
//
// A publicly reachable node therefore always outranks a NATed one, whatever
// its other metrics and weight, unless the operator forces Reachability. A
// node with OptOut has utility NotEligible. Ties are broken by Better.
func Utility(m Metrics, w Weights) float64 {
	if m.OptOut {
		return NotEligible
	}
	w = w.withDefaults()
	sat := func(x, half float64) float64 {
		if !(x > 0) || math.IsInf(x, 0) {
			if math.IsInf(x, 1) {
				return 1
			}
			return 0
		}
		return x / (x + half)
	}
	wo, wb, wc := math.Max(w.Online, 0), math.Max(w.Bandwidth, 0), math.Max(w.CPU, 0)
	base := (wo*sat(m.Online.Seconds(), w.OnlineHalf.Seconds()) +
		wb*sat(m.Bandwidth, w.BandwidthHalf) +
		wc*sat(m.CPU, w.CPUHalf)) / (wo + wb + wc)
	weight := m.Weight
	if !(weight > 0) || math.IsInf(weight, 0) {
		weight = 1
	}
	x := base * weight
	score := x / (1 + x)
	if score >= 1 { // rounding for huge weights
		score = math.Nextafter(1, 0)
	}
	tier := float64(tierUnknown)
	switch m.Reachability {
	case ReachabilityPublic:
		tier = tierPublic
	case ReachabilityPrivate:
		tier = tierPrivate
	}
	return tier + score
}

// Member is a node of the domain's proxy list with its utility.
type Member struct {
	ID      peer.ID
	Utility float64
}

// Better reports whether a ranks before b: higher utility first, then the
// lower peer ID (byte-wise), so every node orders the same members the same way.
func Better(a, b Member) bool {
	if a.Utility != b.Utility {
		return a.Utility > b.Utility
	}
	return a.ID < b.ID
}

// Margin is how much higher a leader's utility must be for it to count as
// clearly better than another (it displaces a leader that still answers);
// between leaders within Margin of each other the higher epoch wins.
const Margin = 0.05

func tierOf(r Reachability) float64 {
	switch r {
	case ReachabilityPublic:
		return tierPublic
	case ReachabilityPrivate:
		return tierPrivate
	default:
		return tierUnknown
	}
}

// claimShare is the share of a utility's score that comes from what the
// node claims (bandwidth, CPU, operator weight); the rest comes from the
// online time an observer has seen.
const claimShare = 0.1

// Credible returns the utility an observer assigns to a peer that claims u,
// has been seen online for online and is observed with reachability reach:
//
//	tier  = min(tier of u, tier of reach)
//	score = (1−c)·s(online, OnlineHalf) + c·(u's score),   c = 0.1
//
// so the score is what the observer saw (a peer connected for no time
// scores at most c; after OnlineHalf about ½) and the claim (bandwidth, CPU,
// operator weight) only shifts it by at most c. A node rates itself the same
// way with its own online time and reachability, so its claims match what
// others can observe. Negative utilities (opted out) are returned unchanged.
func Credible(u float64, online time.Duration, reach Reachability, w Weights) float64 {
	if !(u >= 0) {
		return u
	}
	w = w.withDefaults()
	tier := math.Min(math.Floor(u), tierPublic)
	claimed := math.Min(u-tier, math.Nextafter(1, 0))
	tier = math.Min(tier, tierOf(reach))
	seen := 0.0
	if x := online.Seconds(); x > 0 && !math.IsInf(x, 0) {
		seen = x / (x + w.OnlineHalf.Seconds())
	}
	return tier + math.Min((1-claimShare)*seen+claimShare*claimed, math.Nextafter(1, 0))
}
