package election

import (
	"math"
	"testing"
	"time"
)

func TestUtilityPublicDominates(t *testing.T) {
	w := DefaultWeights()
	strongNAT := Metrics{Online: 1000 * time.Hour, Bandwidth: 1e12, CPU: 1024, Weight: 1e9, Reachability: ReachabilityPrivate}
	weakPublic := Metrics{Reachability: ReachabilityPublic}
	unknown := Metrics{Online: 1000 * time.Hour, Bandwidth: 1e12, CPU: 1024, Weight: 1e9}
	if !(Utility(weakPublic, w) > Utility(unknown, w) && Utility(unknown, w) > Utility(strongNAT, w)) {
		t.Fatalf("public %v, unknown %v, private %v", Utility(weakPublic, w), Utility(unknown, w), Utility(strongNAT, w))
	}
	for _, m := range []Metrics{strongNAT, weakPublic, unknown, {Online: -time.Hour, Bandwidth: math.Inf(1), CPU: math.NaN(), Weight: math.Inf(1)}} {
		if u := Utility(m, w); !validUtility(u) || u < 0 {
			t.Fatalf("utility %v of %+v out of range", u, m)
		}
	}
}

func TestUtilityMonotonic(t *testing.T) {
	w := DefaultWeights()
	base := Metrics{Online: time.Hour, Bandwidth: 1e7, CPU: 2}
	u := Utility(base, w)
	for name, m := range map[string]Metrics{
		"online":    {Online: 2 * time.Hour, Bandwidth: 1e7, CPU: 2},
		"bandwidth": {Online: time.Hour, Bandwidth: 1e8, CPU: 2},
		"cpu":       {Online: time.Hour, Bandwidth: 1e7, CPU: 4},
		"weight":    {Online: time.Hour, Bandwidth: 1e7, CPU: 2, Weight: 2},
	} {
		if Utility(m, w) <= u {
			t.Errorf("more %s does not raise utility", name)
		}
	}
	if got := Utility(Metrics{Online: time.Hour, OptOut: true, Reachability: ReachabilityPublic}, w); got != NotEligible {
		t.Errorf("opt-out utility %v", got)
	}
	// With the defaults and unit weight, half of every metric's scale scores 1/3.
	if got := Utility(base, Weights{}); math.Abs(got-(1+1.0/3)) > 1e-9 {
		t.Errorf("utility of the half-scale node %v, want 4/3", got)
	}
	// Weights change the ranking: only CPU counts.
	cpuOnly := Weights{CPU: 1}
	if Utility(Metrics{CPU: 8}, cpuOnly) <= Utility(Metrics{Online: 100 * time.Hour, CPU: 1}, cpuOnly) {
		t.Error("CPU-only weights ignored")
	}
}

func TestBetterTieBreak(t *testing.T) {
	ids := testIDs(t, 2, 7)
	lo, hi := min(ids[0], ids[1]), max(ids[0], ids[1])
	if !Better(Member{lo, 1}, Member{hi, 1}) || Better(Member{hi, 1}, Member{lo, 1}) {
		t.Error("tie not broken by lower peer ID")
	}
	if !Better(Member{hi, 1.5}, Member{lo, 1}) {
		t.Error("utility does not come first")
	}
}
