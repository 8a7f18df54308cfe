package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is the headline of issue 17: per path, what the processes on it cost, the
// strict rate, the registrations and the idle baseline, as measured in this run.
type Summary struct {
	// Idle is, per path of the cpu section, each process's CPU rate with no call, before
	// any load.
	Idle map[string]*IdleBaseline `json:"idle,omitempty"`
	// Load is per path ("b", "c", "d") at Config.CPURate.
	Load map[string]*PathLoad `json:"load,omitempty"`
	// Ladders is per path ("a", "b", "c", "d").
	Ladders  map[string]*Ladder `json:"ladders,omitempty"`
	ManyRegs *ManyRegs          `json:"many_registrations,omitempty"`
	Register *RegisterLadder    `json:"register,omitempty"`
}

// Figure names used by the targets and the summary.
const (
	nameLatA         = "(a) INVITE→200 direct sipp→sipp"
	nameLatB         = "(b) INVITE→200 via Kamailio"
	nameLatC         = "(c) INVITE→200 hiersip same domain"
	nameLatD         = "(d) INVITE→200 hiersip 2 domains warm"
	nameLatE         = "(e) INVITE→200 hiersip 2 domains cold"
	nameAddB         = "latency added (b) Kamailio"
	nameAddC         = "latency added (c) hiersip same domain"
	nameAddD         = "latency added (d) hiersip 2 domains"
	nameMaxB         = "max strict rate (b) Kamailio"
	nameManyRegs     = "calls lost through a node holding many registrations"
	nameRegRate      = "sustained REGISTER rate (open loop)"
	nameRegToCall    = "REGISTER 200 OK → a call through another node reaches the AOR"
	nameFailover     = "failover: proxy killed → call succeeds"
	nameLookupGrowth = "lookup growth vs log N"
	nameRSSIdle      = "RSS idle node"
	// rssLimitMB is issue 17's bound on a node's memory under 1,000 calls/s.
	rssLimitMB = 150
)

// target records one goal.
func (r *runner) target(goal string, have, ok bool, t Target) {
	t.Goal, t.Status = goal, "n/a"
	if !have {
		t = Target{Goal: goal, Status: "n/a"}
	}
	if have {
		t.Status = "missed"
		if ok {
			t.Status = "met"
		}
	} else if t.Detail == "" {
		t.Detail = "not measured in this run"
	}
	r.rep.Targets = append(r.rep.Targets, t)
}

// targets evaluates issue 17's goals, as ratios to Kamailio in the same run, and the
// earlier issues' goals that still hold.
func (r *runner) targets() {
	rep, sum := r.rep, &r.rep.Summary
	kl := sum.Load["b"]
	for _, k := range []string{"c", "d"} {
		l := sum.Load[k]
		goal := fmt.Sprintf("CPU per call of each node of (%s) ≤ 1.0× Kamailio's per call, at %d calls/s", k, r.cfg.CPURate)
		if kl == nil || l == nil || kl.totalUS() == 0 {
			r.target(goal, false, false, Target{})
			continue
		}
		m, who := l.maxUS()
		ratio := m / kl.totalUS()
		r.target(goal, true, ratio <= 1, Target{Value: m, Reference: kl.totalUS(), Ratio: ratio, Limit: 1,
			Detail: fmt.Sprintf("highest node %s %.0f µs/call vs Kamailio %.0f µs/call (ratio %.2f); every node: %s", who, m, kl.totalUS(), ratio, procsText(l.Procs))})
	}
	if b, c := sum.Ladders["b"], sum.Ladders["c"]; b != nil && c != nil && b.Strict > 0 {
		ratio := float64(c.Strict) / float64(b.Strict)
		r.target("strict max rate of (c) ≥ Kamailio's", true, ratio >= 1, Target{Value: float64(c.Strict), Reference: float64(b.Strict), Ratio: ratio, Limit: 1,
			Detail: fmt.Sprintf("(c) %d calls/s (best single try %d) vs Kamailio %d (best %d): ratio %.2f", c.Strict, c.Best, b.Strict, b.Best, ratio)})
	} else {
		r.target("strict max rate of (c) ≥ Kamailio's", false, false, Target{})
	}
	addB, okB := rep.Get(nameAddB)
	for _, x := range []struct {
		k, name string
		limit   float64
	}{{"c", nameAddC, 1.5}, {"d", nameAddD, 3}} {
		goal := fmt.Sprintf("latency added to INVITE→200 by (%s) ≤ %g× Kamailio's, at %d calls/s (p50)", x.k, x.limit, r.cfg.LatencyRate)
		add, ok := rep.Get(x.name)
		if !ok || !okB || addB.Median <= 0 {
			r.target(goal, false, false, Target{})
			continue
		}
		ratio := add.Median / addB.Median
		r.target(goal, true, ratio <= x.limit, Target{Value: add.Median, Reference: addB.Median, Ratio: ratio, Limit: x.limit,
			Detail: fmt.Sprintf("(%s) adds %.0f µs p50 (%.0f p95), Kamailio %.0f (%.0f): ratio %.2f at p50, %.2f at p95", x.k, add.Median, add.P95, addB.Median, addB.P95, ratio, safeDiv(add.P95, addB.P95))})
	}
	if mr := sum.ManyRegs; mr != nil && len(mr.After) > 0 {
		fa, na := lost(mr.After)
		fb, nb := lost(mr.Before)
		r.target(fmt.Sprintf("no call lost through a node holding %d registrations, at the rate it holds with none", mr.Registrations), true, fa == 0,
			Target{Value: float64(fa), Limit: 0, Detail: fmt.Sprintf("%d of %d calls lost at %d calls/s (%s); without the registrations %d of %d", fa, na, mr.Rate, mr.RateFrom, fb, nb)})
	} else {
		r.target("no call lost through a node holding many registrations, at the rate it holds with none", false, false, Target{})
	}
	var peak float64
	var who string
	var mems []string
	for _, k := range []string{"c", "d"} {
		if l := sum.Load[k]; l != nil {
			for _, m := range l.Mem {
				mems = append(mems, fmt.Sprintf("(%s) %s %.0f/%.0f", k, m.Name, m.SteadyMB, m.PeakMB))
				if m.PeakMB > peak {
					peak, who = m.PeakMB, fmt.Sprintf("(%s) %s", k, m.Name)
				}
			}
		}
	}
	goal := fmt.Sprintf("RSS of a node under %d calls/s ≤ %d MB", r.cfg.CPURate, rssLimitMB)
	if who != "" {
		r.target(goal, true, peak <= rssLimitMB, Target{Value: peak, Limit: rssLimitMB,
			Detail: fmt.Sprintf("highest peak %s %.0f MB; steady/peak MB: %s", who, peak, strings.Join(mems, ", "))})
	} else {
		r.target(goal, false, false, Target{})
	}
	fo, ok := rep.Get(nameFailover)
	r.target("failover < 2 s (issue 9)", ok, fo.Median < 2000, Target{Value: fo.Median, Limit: 2000, Detail: fmt.Sprintf("median %.0f ms", fo.Median)})
	g, ok := rep.Get(nameLookupGrowth)
	r.target("lookup latency grows no faster than log N (issue 9)", ok, g.Median <= 1.5, Target{Value: g.Median, Limit: 1.5,
		Detail: fmt.Sprintf("latency ratio / log-N ratio between the smallest and largest domain = %.2f (≤ 1.5 counts as logarithmic)", g.Median)})
	ir, ok := rep.Get(nameRSSIdle)
	r.target("idle node ≤ 50 MB RSS (issue 9)", ok, ir.Median <= 50, Target{Value: ir.Median, Limit: 50, Detail: fmt.Sprintf("%.1f MB", ir.Median)})
}

func procsText(ps []ProcCost) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprintf("%s (%s) %.0f", p.Name, p.Role, p.PerCallUS)
	}
	return strings.Join(s, ", ")
}

// print writes the figures, then the summary of issue 17 as a Markdown table, then the
// targets.
func (r *runner) print(out io.Writer) {
	fmt.Fprintf(out, "\n")
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "section\tfigure\tmedian\tp95\tunit\tn\thow measured")
	for _, f := range r.rep.Figures {
		if f.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t\t\tSKIPPED: %s\n", f.Section, f.Name, f.Skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", f.Section, f.Name, num(f.Median), num(f.P95), f.Unit, f.N, f.Method)
	}
	tw.Flush()
	mc := r.rep.Machine
	var secs []string
	for _, s := range mc.Sections {
		secs = append(secs, fmt.Sprintf("%s %.2f", s.Section, s.OthersCores))
	}
	fmt.Fprintf(out, "\nmachine: %d cores; load average %s at the start, %s at the end, highest 1-min %s; processes outside the bench used %.2f cores on average (at most %.2f over 5 s), the bench %.2f; others per section: %s\n",
		r.rep.Cores, r.rep.LoadStart, r.rep.LoadEnd, mc.LoadMax, mc.OthersCores, mc.OthersMax, mc.OursCores, strings.Join(secs, ", "))
	fmt.Fprintf(out, "\nsummary (%s, commit %s):\n\n", r.rep.Started.Format(time.RFC3339), r.rep.Commit)
	for _, row := range r.summaryRows() {
		fmt.Fprintf(out, "| %s |\n", strings.Join(row, " | "))
	}
	r.printProfiles(out)
	if len(r.rep.Targets) > 0 {
		fmt.Fprintf(out, "\ntargets (ratios to Kamailio measured in this run):\n")
		for _, t := range r.rep.Targets {
			fmt.Fprintf(out, "  [%s] %s: %s\n", t.Status, t.Goal, t.Detail)
		}
	}
	for _, e := range r.rep.Errors {
		fmt.Fprintf(out, "ERROR %s\n", e)
	}
	fmt.Fprintf(out, "total %v\n", r.rep.Duration.Round(time.Second))
}

// summaryRows renders the summary: a header, a separator, then one row per figure with
// a column per path and one for the target.
func (r *runner) summaryRows() [][]string {
	sum := &r.rep.Summary
	rows := [][]string{
		{"figure", "(a) sipp direct", "(b) Kamailio", "(c) hiersip, same domain, 2 nodes", "(d) hiersip, 2 domains, 4 nodes", "target (ratio to Kamailio)"},
		{"---", "---", "---", "---", "---", "---"},
	}
	dash := "–"
	status := func(prefix string) string {
		for _, t := range r.rep.Targets {
			if strings.HasPrefix(t.Goal, prefix) {
				switch {
				case t.Status == "n/a":
					return "n/a"
				case t.Reference == 0:
					return fmt.Sprintf("%s (%s)", num(t.Value), t.Status)
				}
				return fmt.Sprintf("%.2f (%s)", t.Ratio, t.Status)
			}
		}
		return ""
	}
	rate := r.cfg.CPURate
	// CPU.
	cpuRow := []string{fmt.Sprintf("CPU per call at %d calls/s, whole path (µs)", rate), dash}
	perRow := []string{"CPU per call of each process on the path (µs)", dash}
	idleRow := []string{"idle CPU of those processes before any load (ms/s; µs per call at the rate, not subtracted)", dash}
	ratioRow := []string{"highest process ÷ Kamailio's per call", dash}
	memRow := []string{fmt.Sprintf("RSS at %d calls/s, steady / peak (MB)", rate), dash}
	allocRow := []string{"allocations per call per node (objects, KB)", dash}
	gcRow := []string{"GC share of node CPU (profile, %)", dash}
	kam := 0.0
	if l := sum.Load["b"]; l != nil {
		kam = l.totalUS()
	}
	for _, k := range []string{"b", "c", "d"} {
		l := sum.Load[k]
		if l == nil {
			for _, row := range []*[]string{&cpuRow, &perRow, &idleRow, &ratioRow, &memRow, &allocRow, &gcRow} {
				*row = append(*row, dash)
			}
			continue
		}
		c := num(l.totalUS())
		if !l.Result.clean() {
			c += fmt.Sprintf(" (NOT clean: %d failed, %d retrans)", l.Result.Failed, l.Result.Retrans+max(l.Result.UASRetrans, 0))
		}
		cpuRow = append(cpuRow, c)
		var per, idle, mem, alloc, gc []string
		for _, p := range l.Procs {
			per = append(per, fmt.Sprintf("%s %s", shortRole(p.Role), num(p.PerCallUS)))
			idle = append(idle, fmt.Sprintf("%s %s (%s)", shortRole(p.Role), num(p.IdleMsPerS), num(p.IdlePerCallUS)))
		}
		for i, m := range l.Mem {
			mem = append(mem, fmt.Sprintf("%s %.0f / %.0f", shortRole(l.Procs[i].Role), m.SteadyMB, m.PeakMB))
		}
		for i, a := range l.Alloc {
			alloc = append(alloc, fmt.Sprintf("%s %.0f, %.1f", shortRole(l.Procs[i].Role), a.ObjectsCall, a.BytesCall/1024))
		}
		for i, p := range l.Profiles {
			if p.GCShare >= 0 {
				gc = append(gc, fmt.Sprintf("%s %.0f (malloc %.0f)", shortRole(l.Procs[i].Role), p.GCShare, p.MallocShare))
			}
		}
		perRow = append(perRow, strings.Join(per, ", "))
		idleRow = append(idleRow, strings.Join(idle, ", "))
		memRow = append(memRow, strings.Join(mem, ", "))
		allocRow = append(allocRow, orDash(strings.Join(alloc, "; ")))
		gcRow = append(gcRow, orDash(strings.Join(gc, ", ")))
		if m, _ := l.maxUS(); kam > 0 && k != "b" {
			ratioRow = append(ratioRow, fmt.Sprintf("%.2f", m/kam))
		} else {
			ratioRow = append(ratioRow, dash)
		}
	}
	cpuRow = append(cpuRow, "")
	perRow = append(perRow, "")
	idleRow = append(idleRow, "")
	ratioRow = append(ratioRow, "≤ 1.0: (c) "+status("CPU per call of each node of (c)")+", (d) "+status("CPU per call of each node of (d)"))
	memRow = append(memRow, fmt.Sprintf("≤ %d MB: %s", rssLimitMB, status("RSS of a node")))
	allocRow = append(allocRow, "")
	gcRow = append(gcRow, "")
	// Latency.
	latRow := []string{fmt.Sprintf("INVITE→200 at %d calls/s, p50 / p95 (µs)", r.cfg.LatencyRate)}
	addRow := []string{"latency added (x − a), p50 / p95 (µs)", dash}
	addRatio := []string{"latency added ÷ Kamailio's, p50 / p95", dash, dash}
	for _, n := range []string{nameLatA, nameLatB, nameLatC, nameLatD} {
		if f, ok := r.rep.Get(n); ok {
			latRow = append(latRow, fmt.Sprintf("%s / %s", num(f.Median), num(f.P95)))
		} else {
			latRow = append(latRow, dash)
		}
	}
	latRow = append(latRow, "")
	for _, n := range []string{nameAddB, nameAddC, nameAddD} {
		if f, ok := r.rep.Get(n); ok {
			addRow = append(addRow, fmt.Sprintf("%s / %s", num(f.Median), num(f.P95)))
		} else {
			addRow = append(addRow, dash)
		}
	}
	addRow = append(addRow, "")
	for _, k := range []string{"c", "d"} {
		if f, ok := r.rep.Get("latency added ratio (" + k + ")/(b)"); ok {
			addRatio = append(addRatio, fmt.Sprintf("%.2f / %.2f", f.Median, f.P95))
		} else {
			addRatio = append(addRatio, dash)
		}
	}
	addRatio = append(addRatio, "(c) ≤ 1.5: "+status("latency added to INVITE→200 by (c)")+"; (d) ≤ 3: "+status("latency added to INVITE→200 by (d)"))
	// Rates.
	rateRow := []string{"highest rate, no failed call, no retransmission, both tries (best single try), calls/s"}
	for _, k := range []string{"a", "b", "c", "d"} {
		if l := sum.Ladders[k]; l != nil {
			s := fmt.Sprintf("%d (%d)", l.Strict, l.Best)
			if k == "a" && l.From > 0 && len(l.Steps) > 0 && l.Steps[0].Rate > r.cfg.Rates[0] {
				s += fmt.Sprintf(" from %d up", l.From)
			}
			rateRow = append(rateRow, s)
		} else {
			rateRow = append(rateRow, dash)
		}
	}
	rateRow = append(rateRow, "(c) ≥ 1.0: "+status("strict max rate of (c)"))
	strictCPU := []string{"CPU per call of each process at that strict rate (µs, first try)"}
	for _, k := range []string{"a", "b", "c", "d"} {
		if l := sum.Ladders[k]; l != nil && l.CPUAtStrict != "" {
			strictCPU = append(strictCPU, l.CPUAtStrict)
		} else {
			strictCPU = append(strictCPU, dash)
		}
	}
	strictCPU = append(strictCPU, "")
	rows = append(rows, cpuRow, perRow, idleRow, ratioRow, latRow, addRow, addRatio, rateRow, strictCPU, memRow, allocRow, gcRow)
	if mr := sum.ManyRegs; mr != nil && len(mr.After) > 0 {
		fa, na := lost(mr.After)
		fb, nb := lost(mr.Before)
		rows = append(rows, []string{fmt.Sprintf("calls lost through the callee's node holding %d registrations, at %d calls/s", mr.Registrations, mr.Rate), dash, dash,
			fmt.Sprintf("%d of %d (without them: %d of %d); callee CPU/call %s µs", fa, na, fb, nb, floatsText(mr.CalleeUS)), dash,
			"0: " + status("no call lost")})
	}
	if rg := sum.Register; rg != nil {
		var steps []string
		for _, s := range rg.Steps {
			steps = append(steps, fmt.Sprintf("%d/s %d of %d ok", s.Rate, s.OK, s.Sent))
		}
		rows = append(rows, []string{fmt.Sprintf("sustained REGISTER rate at one node (open loop, every 200 OK within %v), /s", rg.Bound), dash, dash,
			fmt.Sprintf("%d (%s)", rg.Sustained, strings.Join(steps, ", ")), dash, ""})
	}
	return rows
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// shortRole abbreviates a process's role for the summary.
func shortRole(role string) string {
	switch role {
	case "caller's node":
		return "caller"
	case "callee's node":
		return "callee"
	case "caller's proxy":
		return "proxy 1"
	case "callee's proxy":
		return "proxy 2"
	case "Kamailio (all its processes)":
		return "kamailio"
	}
	return role
}

// printProfiles writes the profile summaries of the CPU section.
func (r *runner) printProfiles(out io.Writer) {
	for _, k := range []string{"c", "d"} {
		l := r.rep.Summary.Load[k]
		if l == nil {
			continue
		}
		for i, p := range l.Profiles {
			if p.GCShare < 0 {
				continue
			}
			fmt.Fprintf(out, "\nprofile (%s) %s (%s) at %d calls/s: GC %.1f %%, mallocgc %.1f %%, I/O syscalls %.1f %%, futex %.1f %%; %.0f objects and %.1f KB allocated per call\n",
				k, p.Name, l.Procs[i].Role, l.Rate, p.GCShare, p.MallocShare, p.SyscallPct, p.FutexPct, l.Alloc[i].ObjectsCall, l.Alloc[i].BytesCall/1024)
			fmt.Fprintf(out, "  top (flat): %s\n", strings.Join(p.Top, "; "))
			fmt.Fprintf(out, "  hiersip/sipgo (cum): %s\n", strings.Join(p.TopCum, "; "))
			fmt.Fprintf(out, "  allocations (objects): %s\n", strings.Join(p.TopAllocs, "; "))
		}
	}
}
