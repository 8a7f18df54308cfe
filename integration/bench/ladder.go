package bench

import (
	"fmt"
	"strings"
)

// The strict rate ladder: sipp's uac offers calls at a fixed rate for a step's duration;
// a try passes when every call succeeded with no failed call and no retransmission.
// Each rate of the ladder is tried stepTries times. A step passes when every try
// passed. The ladder goes on while a step has at least one passing try and stops at
// the first step where none passed.
//
// Two figures come out of it: the strict maximum, the highest rate whose step passed
// (every try), and the best single try, the highest rate at which one try passed. The
// first is what the targets use; the distance between the two, and a lower step that
// did not pass, show how much the machine's other load moved the result (all tries
// are reported).

// stepTries is how many times each rate is tried.
const stepTries = 2

// LadderStep is one rate of the ladder and its tries.
type LadderStep struct {
	Rate  int       `json:"rate"`
	Tries []SippRun `json:"tries"`
}

// passed reports whether every try of the step passed (and all tries were made).
func (s LadderStep) passed() bool {
	if len(s.Tries) < stepTries {
		return false
	}
	for _, t := range s.Tries {
		if !t.clean() {
			return false
		}
	}
	return true
}

// anyPassed reports whether at least one try passed.
func (s LadderStep) anyPassed() bool {
	for _, t := range s.Tries {
		if t.clean() {
			return true
		}
	}
	return false
}

// ladderGoesOn reports whether the ladder tries the next rate after steps.
func ladderGoesOn(steps []LadderStep) bool {
	return len(steps) == 0 || steps[len(steps)-1].anyPassed()
}

// ladderSummary returns the strict maximum (the highest rate whose step passed every
// try) and the best single passing try of steps; 0 when none.
func ladderSummary(steps []LadderStep) (strict, best int) {
	for _, s := range steps {
		if s.passed() {
			strict = max(strict, s.Rate)
		}
		if s.anyPassed() {
			best = max(best, s.Rate)
		}
	}
	return strict, best
}

// String renders a try: "ok" or what broke it.
func (t SippRun) String() string {
	if t.clean() {
		return fmt.Sprintf("ok (%d calls)", t.Successful)
	}
	s := fmt.Sprintf("%d ok, %d failed, %d retrans", t.Successful, t.Failed, t.Retrans)
	if t.Aborted {
		s += fmt.Sprintf(", cut after %.1f s", t.Elapsed.Seconds())
	}
	return s
}

// ladderText renders steps for the table: "250: ok, ok; 500: ok, 3 retrans…".
func ladderText(steps []LadderStep) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		tries := make([]string, len(s.Tries))
		for j, t := range s.Tries {
			if t.clean() {
				tries[j] = "ok"
			} else {
				tries[j] = t.String()
			}
		}
		parts[i] = fmt.Sprintf("%d: %s", s.Rate, strings.Join(tries, " / "))
	}
	return strings.Join(parts, "; ")
}
