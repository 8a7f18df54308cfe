package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Ladder is the strict rate ladder of one path (ladder.go).
type Ladder struct {
	Path  string       `json:"path"`
	Steps []LadderStep `json:"steps"`
	// Strict is the highest rate whose step passed both tries; Best the
	// highest rate at which one try passed; From the first rate tried (lower rates were
	// not run).
	Strict int `json:"strict"`
	Best   int `json:"best"`
	From   int `json:"from"`
	// CPUAtStrict is the CPU per call of each process of the path in the first try at
	// the strict rate (µs, "name µs, …").
	CPUAtStrict string `json:"cpu_at_strict,omitempty"`
}

// runLadder steps sipp's uac along p through rates, each tried stepTries times (a try
// is cut at its first failed call or retransmission), until a step where no try
// passed. Before each try it waits until the env is at rest again; it meters every
// process of the path over each try.
func (r *runner) runLadder(ctx context.Context, e *env, p *path, rates []int) (*Ladder, error) {
	l := &Ladder{Path: p.key}
	if len(rates) > 0 {
		l.From = rates[0]
	}
	if err := warmUp(ctx, p); err != nil {
		return l, err
	}
	for _, rate := range rates {
		if !ladderGoesOn(l.Steps) {
			break
		}
		step := LadderStep{Rate: rate}
		for try := 1; try <= stepTries; try++ {
			if err := r.waitRecovered(ctx, e); err != nil {
				return l, err
			}
			s0 := snapshot(procCPU, time.Now(), p.procs)
			res, err := runSippUAC(ctx, r.sipp, e.sippDir, e.uas, p.target, p.ruri, rate, r.cfg.StepDuration, true)
			if err != nil {
				return l, err
			}
			if res.Successful > 0 && len(p.procs) > 0 {
				res.PathCPU = map[string]float64{}
				for _, c := range costs(p.procs, s0, snapshot(procCPU, time.Now(), p.procs), res.Successful) {
					res.PathCPU[c.Name] = c.PerCallUS
				}
			}
			if !res.clean() {
				res.Diag = e.diag(ctx)
			}
			r.log.Info("bench: step", "path", p.label, "rate", rate, "try", try, "result", res.String(), "nodes", res.Diag)
			step.Tries = append(step.Tries, res)
		}
		l.Steps = append(l.Steps, step)
	}
	l.Strict, l.Best = ladderSummary(l.Steps)
	return l, nil
}

// cpuAt returns the CPU per call of each process of the path in the first try of
// the ladder's step at rate ("" when none).
func (l *Ladder) cpuAt(rate int, procs []meteredProc) string {
	for _, s := range l.Steps {
		if s.Rate != rate || len(s.Tries) == 0 || s.Tries[0].PathCPU == nil {
			continue
		}
		var parts []string
		for _, p := range procs {
			parts = append(parts, fmt.Sprintf("%s %s", p.Name, num(s.Tries[0].PathCPU[p.Name])))
		}
		return strings.Join(parts, ", ")
	}
	return ""
}

const ladderMethod = "sipp uac → %s → sipp uas (its scenario copies Record-Route: ACK and BYE follow the route of the dialog), UDP, fresh processes for the path, after warm-up calls, each try once the processes are at rest again; rates stepped %s for %v each, each tried %d times; a try passes with every call successful, no failed call and no retransmission at the uac or the uas (it is cut at the first); a step passes when both tries pass; the ladder stops at the first step where no try passed. Strict = the highest rate whose step passed; steps: %s"

func (r *runner) throughput(ctx context.Context) error {
	if r.sipp == "" {
		r.skip(SectionThroughput, "all", "sipp missing (apt-get install sip-tester)")
		return nil
	}
	var errs []error
	// The proxies first; then sipp alone, from the highest rate a proxy reached, to
	// show whether the load generator limits those figures. Each path in an env of its
	// own.
	for _, k := range []string{"b", "c", "d", "a"} {
		if k == "b" && r.kamailio == "" {
			r.skip(SectionThroughput, nameMaxB, "kamailio missing (apt-get install kamailio)")
			continue
		}
		rates := r.cfg.Rates
		if k == "a" {
			top := 0
			for _, l := range r.rep.Summary.Ladders {
				top = max(top, l.Best)
			}
			rates = slices.DeleteFunc(slices.Clone(rates), func(v int) bool { return v < top })
		}
		e, p, err := r.envFor(ctx, k, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("(%s): %w", k, err))
			continue
		}
		l, err := r.runLadder(ctx, e, p, rates)
		e.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.label, err))
		}
		r.rep.Summary.Ladders[k] = l
		via := map[string]string{"a": "(nothing)", "b": "Kamailio", "c": "caller's node → callee's node", "d": "caller's node → its proxy → the callee domain's proxy → callee's node"}[k]
		m := fmt.Sprintf(ladderMethod, via, joinInts(rates), r.cfg.StepDuration, stepTries, ladderText(l.Steps))
		if k == "a" && len(rates) < len(r.cfg.Rates) {
			m += fmt.Sprintf("; the rates below %d (the best a proxy path reached) were not run", l.From)
		}
		if l.CPUAtStrict = l.cpuAt(l.Strict, p.procs); l.CPUAtStrict != "" {
			m += fmt.Sprintf("; CPU per call at %d calls/s (first try, /proc): %s µs", l.Strict, l.CPUAtStrict)
		}
		r.add(SectionThroughput, "max strict rate "+p.label, "calls/s", m, []float64{float64(l.Strict)})
		r.add(SectionThroughput, "best single try "+p.label, "calls/s", "the highest rate at which one of the two tries passed", []float64{float64(l.Best)})
	}
	if b, ok := r.rep.Summary.Ladders["b"]; ok && b.Strict > 0 {
		for _, k := range []string{"c", "d"} {
			if l, ok := r.rep.Summary.Ladders[k]; ok {
				r.add(SectionThroughput, "max strict rate ratio ("+k+")/(b)", "×", "strict max rate of the hiersip path ÷ Kamailio's, same run", []float64{float64(l.Strict) / float64(b.Strict)})
			}
		}
	}
	return errors.Join(errs...)
}

// ManyRegs is the outcome of the manyregs section: calls along path (c) at one rate,
// before and after the callee's node took Registrations registrations.
type ManyRegs struct {
	Rate          int       `json:"rate"`
	RateFrom      string    `json:"rate_from"`
	Registrations int       `json:"registrations"`
	FillRate      int       `json:"fill_rate"`
	FillFailed    int       `json:"fill_failed"` // REGISTERs of the open-loop fill without a 200 OK in time (registered again after)
	Before        []SippRun `json:"before"`
	// Skipped are the tries without registrations at higher rates that lost calls.
	Skipped []SippRun `json:"skipped,omitempty"`
	After   []SippRun `json:"after"`
	// CalleeUS is the callee node's CPU per call in each try (before…, after…).
	CalleeUS []float64 `json:"callee_cpu_us"`
}

// lost is the number of calls of runs that did not succeed.
func lost(runs []SippRun) (failed, calls int) {
	for _, t := range runs {
		failed += t.Calls - t.Successful
		calls += t.Calls
	}
	return failed, calls
}

// manyRegs places calls along path (c) at the rate it held with no registration (the
// strict rate of the throughput section, when it ran), twice, then registers
// ManyRegs AORs at the callee's node with an open-loop REGISTER generator (digest off:
// the node has no users file), and places the same calls again, twice. The tries run
// their whole duration (not cut at a failure), so that every failed call is counted.
func (r *runner) manyRegs(ctx context.Context) error {
	if r.sipp == "" {
		r.skip(SectionManyRegs, nameManyRegs, "sipp missing (apt-get install sip-tester)")
		return nil
	}
	e, p, err := r.envFor(ctx, "c", false)
	if err != nil {
		return err
	}
	defer e.Close()
	callee := p.nodes[1]
	mr := &ManyRegs{Registrations: r.cfg.ManyRegs, FillRate: r.cfg.RegFillRate}
	if l, ok := r.rep.Summary.Ladders["c"]; ok && l.Strict > 0 {
		mr.Rate, mr.RateFrom = l.Strict, "the strict max rate of (c) in this run"
	} else {
		mr.Rate, mr.RateFrom = r.cfg.Rates[0], "the ladder's first rate (the throughput section did not give (c) a strict rate)"
	}
	r.rep.Summary.ManyRegs = mr
	if err := warmUp(ctx, p); err != nil {
		return err
	}
	calleeProc := []meteredProc{p.procs[1]}
	tries := func(into *[]SippRun) error {
		for range stepTries {
			if err := r.waitRecovered(ctx, e); err != nil {
				return err
			}
			s0 := snapshot(procCPU, time.Now(), calleeProc)
			res, err := runSippUAC(ctx, r.sipp, e.sippDir, e.uas, p.target, p.ruri, mr.Rate, r.cfg.StepDuration, false)
			if err != nil {
				return err
			}
			s1 := snapshot(procCPU, time.Now(), calleeProc)
			mr.CalleeUS = append(mr.CalleeUS, costs(calleeProc, s0, s1, res.Successful)[0].PerCallUS)
			if !res.clean() {
				res.Diag = e.diag(ctx)
			}
			r.log.Info("bench: manyregs try", "rate", mr.Rate, "result", res.String(), "nodes", res.Diag)
			*into = append(*into, res)
		}
		return nil
	}
	// The rate must be one the node holds with no registration, here and now: when a
	// try without them loses a call, the rate is halved and tried again (three times
	// at most).
	for halvings := 0; ; halvings++ {
		mr.Before = nil
		if err := tries(&mr.Before); err != nil {
			return err
		}
		if f, _ := lost(mr.Before); f == 0 || halvings == 3 || mr.Rate <= 25 {
			break
		}
		r.log.Info("bench: manyregs: calls lost without registrations; halving the rate", "rate", mr.Rate)
		mr.Skipped = append(mr.Skipped, mr.Before...)
		mr.Rate /= 2
		mr.RateFrom += ", halved: calls were lost at the higher rate without registrations"
	}
	fill, err := fillRegistrations(ctx, callee, "m", r.cfg.ManyRegs, r.cfg.RegFillRate)
	if err != nil {
		return err
	}
	mr.FillFailed = fill
	if err := tries(&mr.After); err != nil {
		return err
	}
	fb, nb := lost(mr.Before)
	fa, na := lost(mr.After)
	m := fmt.Sprintf("sipp uac → (c) → sipp uas at %d calls/s (%s), 2 tries of %v each, not cut, fresh processes; before: %s; then %d AORs registered at the callee's node by an open-loop REGISTER generator at %d/s (%d without a 200 OK within 1 s, registered again), digest off; after: %s; callee node CPU per call %s µs",
		mr.Rate, mr.RateFrom, r.cfg.StepDuration, runsText(mr.Before), mr.Registrations, mr.FillRate, mr.FillFailed, runsText(mr.After), floatsText(mr.CalleeUS))
	r.add(SectionManyRegs, nameManyRegs, "calls", m, []float64{float64(fa)})
	r.add(SectionManyRegs, "calls lost without the registrations", "calls", fmt.Sprintf("the same calls before the registrations: %d of %d did not succeed", fb, nb), []float64{float64(fb)})
	_ = na
	return nil
}

func runsText(runs []SippRun) string { return joinText(runs, " / ", SippRun.String) }

func floatsText(v []float64) string { return joinText(v, ", ", num) }

// joinText writes each of v with text and puts sep between them.
func joinText[T any](v []T, sep string, text func(T) string) string {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += sep
		}
		s += text(x)
	}
	return s
}
