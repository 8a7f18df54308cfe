package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Sections of the benchmark, in the order they run.
const (
	SectionLatency    = "latency"
	SectionThroughput = "throughput"
	SectionRegister   = "register"
	SectionLookup     = "lookup"
	SectionFailover   = "failover"
	SectionFootprint  = "footprint"
	SectionMedia      = "media"
)

// AllSections lists every section.
var AllSections = []string{SectionLatency, SectionThroughput, SectionRegister, SectionLookup, SectionFailover, SectionFootprint, SectionMedia}

// Config configures a run. The zero value runs the full benchmark.
type Config struct {
	// Quick shortens every section (fewer runs, calls and seconds), for CI.
	Quick bool
	// Sections restricts the run to these sections (default AllSections).
	Sections []string
	// Runs is how many times each latency path is measured (default 5; quick 2).
	Runs int
	// Calls is the number of calls per latency run (default 100; quick 20).
	Calls int
	// StepDuration is how long each throughput step runs (default 20 s; quick 3 s).
	StepDuration time.Duration
	// Rates are the call rates the throughput search steps through, in
	// increasing order; it stops at the first rate that is not clean
	// (default 250, 500, 1000, 2000, 4000, 8000; quick 50, 200).
	Rates []int
	// CPURate is the call rate at which the CPU time per call of each
	// proxy is measured, over one StepDuration (default 1000; quick 100).
	CPURate int
	// LookupSizes are the domain sizes of the lookup-scaling section
	// (default 10, 100, 1000; quick 10, 50).
	LookupSizes []int
	// Lookups is the number of lookups per domain size (default 200; quick 30).
	Lookups int
	// FailoverRuns is how many proxies are killed (default 3; quick 1).
	FailoverRuns int
	// ColdRuns is how many fresh node sets measure the cold inter-domain
	// call (default 3; quick 1).
	ColdRuns int
	// Registrations held by the node of the footprint section, and the
	// number of AORs of the registration-rate test (default 1000; quick 200).
	Registrations int
	// OutDir receives bench.json, sipp and Kamailio files and CPU profiles
	// (default "bench-results").
	OutDir string
	// Profile writes CPU profiles of the hiersip node process during the
	// throughput section into OutDir.
	Profile bool
	// Logger receives progress (default: slog.Default()).
	Logger *slog.Logger
	// SippPath and KamailioPath override the tools' paths (default: $PATH).
	SippPath, KamailioPath string
	// MediaCalls are the numbers of concurrent calls the media section steps through, in
	// increasing order; it stops at the first with 1 % loss or more (default 10, 100,
	// 250, 500, 750, 1000, 1500, 2000; quick 10, 50).
	MediaCalls []int
	// MediaDuration is how long each media step sends (default 10 s; quick 3 s).
	MediaDuration time.Duration
}

func (c Config) withDefaults() Config {
	pick := func(v, full, quick int) int {
		if v != 0 {
			return v
		}
		if c.Quick {
			return quick
		}
		return full
	}
	c.Runs = pick(c.Runs, 5, 2)
	c.Calls = pick(c.Calls, 100, 20)
	c.Lookups = pick(c.Lookups, 200, 30)
	c.FailoverRuns = pick(c.FailoverRuns, 3, 1)
	c.ColdRuns = pick(c.ColdRuns, 3, 1)
	c.Registrations = pick(c.Registrations, 1000, 200)
	c.CPURate = pick(c.CPURate, 1000, 100)
	if c.StepDuration == 0 {
		c.StepDuration = 20 * time.Second
		if c.Quick {
			c.StepDuration = 3 * time.Second
		}
	}
	if len(c.Rates) == 0 {
		c.Rates = []int{250, 500, 1000, 2000, 4000, 8000}
		if c.Quick {
			c.Rates = []int{50, 200}
		}
	}
	if len(c.LookupSizes) == 0 {
		c.LookupSizes = []int{10, 100, 1000}
		if c.Quick {
			c.LookupSizes = []int{10, 50}
		}
	}
	if len(c.Sections) == 0 {
		c.Sections = AllSections
	}
	if len(c.MediaCalls) == 0 {
		c.MediaCalls = []int{10, 100, 250, 500, 750, 1000, 1500, 2000}
		if c.Quick {
			c.MediaCalls = []int{10, 50}
		}
	}
	if c.MediaDuration == 0 {
		c.MediaDuration = 10 * time.Second
		if c.Quick {
			c.MediaDuration = 3 * time.Second
		}
	}
	if c.OutDir == "" {
		c.OutDir = "bench-results"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Figure is one measured value: its median and 95th percentile over the
// samples (calls, runs or lookups, as Method says).
type Figure struct {
	Section string  `json:"section"`
	Name    string  `json:"name"`
	Unit    string  `json:"unit"`
	Median  float64 `json:"median"`
	P95     float64 `json:"p95"`
	P99     float64 `json:"p99,omitempty"`
	N       int     `json:"n"`
	Method  string  `json:"method"`
	Skipped string  `json:"skipped,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Quick    bool          `json:"quick"`
	Figures  []Figure      `json:"figures"`
	Targets  []Target      `json:"targets"`
	Errors   []string      `json:"errors,omitempty"`
}

// Target is one of issue 9's goals and whether this run met it.
type Target struct {
	Goal   string `json:"goal"`
	Status string `json:"status"` // "met", "missed" or "n/a"
	Detail string `json:"detail"`
}

// ErrSection is returned (joined) when a section fails.
var ErrSection = errors.New("bench: section failed")

type runner struct {
	cfg      Config
	log      *slog.Logger
	rep      *Report
	sipp     string
	kamailio string
	dir      string
}

// Run runs the benchmark's sections, prints the table to out and writes the
// report as JSON to OutDir/bench.json. A failing section is recorded in the
// report and the run goes on; the error joins all section errors.
// The binary must call MaybeRunHelper at the start of main (or TestMain).
func Run(ctx context.Context, cfg Config, out io.Writer) (*Report, error) {
	cfg = cfg.withDefaults()
	r := &runner{cfg: cfg, log: cfg.Logger, rep: &Report{Started: time.Now().UTC(), Quick: cfg.Quick}}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.OutDir)
	if err != nil {
		return nil, err
	}
	r.dir = dir
	r.sipp = lookTool(cfg.SippPath, "sipp")
	r.kamailio = lookTool(cfg.KamailioPath, "kamailio")
	fmt.Fprintf(out, "hiersip-bench (%s); sipp: %s; kamailio: %s\n", modeName(cfg.Quick), orMissing(r.sipp, "sip-tester"), orMissing(r.kamailio, "kamailio"))
	var errs []error
	sections := map[string]func(context.Context) error{
		SectionLatency: r.latency, SectionThroughput: r.throughput, SectionRegister: r.register,
		SectionLookup: r.lookup, SectionFailover: r.failover, SectionFootprint: r.footprint,
		SectionMedia: r.media,
	}
	for _, s := range AllSections {
		if !slices.Contains(cfg.Sections, s) {
			continue
		}
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		start := time.Now()
		r.log.Info("bench: section", "name", s)
		if err := sections[s](ctx); err != nil {
			r.log.Error("bench: section failed", "name", s, "err", err)
			r.rep.Errors = append(r.rep.Errors, s+": "+err.Error())
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrSection, s, err))
		}
		r.log.Info("bench: section done", "name", s, "took", time.Since(start).Round(time.Millisecond))
	}
	r.rep.Duration = time.Since(r.rep.Started)
	r.targets()
	r.print(out)
	b, err := json.MarshalIndent(r.rep, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "bench.json"), b, 0o644)
	}
	if err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(out, "\nwritten %s\n", filepath.Join(dir, "bench.json"))
	return r.rep, errors.Join(errs...)
}

func modeName(quick bool) string {
	if quick {
		return "quick"
	}
	return "full"
}

func lookTool(override, name string) string {
	if override != "" {
		return override
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} { // kamailio lives in sbin
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func orMissing(path, pkg string) string {
	if path == "" {
		return "MISSING (apt-get install " + pkg + "; comparison rows skipped)"
	}
	return path
}

// add records a figure from samples.
func (r *runner) add(section, name, unit, method string, samples []float64) Figure {
	f := Figure{Section: section, Name: name, Unit: unit, Method: method, N: len(samples)}
	if len(samples) > 0 {
		s := slices.Clone(samples)
		slices.Sort(s)
		f.Median = quantile(s, 0.5)
		f.P95 = quantile(s, 0.95)
		f.P99 = quantile(s, 0.99)
	}
	r.rep.Figures = append(r.rep.Figures, f)
	return f
}

func (r *runner) skip(section, name, why string) {
	r.rep.Figures = append(r.rep.Figures, Figure{Section: section, Name: name, Skipped: why})
}

// quantile of sorted s, nearest rank.
func quantile(s []float64, q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Get returns the figure named name, if present and not skipped.
func (rep *Report) Get(name string) (Figure, bool) {
	for _, f := range rep.Figures {
		if f.Name == name && f.Skipped == "" && f.N > 0 {
			return f, true
		}
	}
	return Figure{}, false
}

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
	if len(r.rep.Targets) > 0 {
		fmt.Fprintf(out, "\ntargets:\n")
		for _, t := range r.rep.Targets {
			fmt.Fprintf(out, "  [%s] %s: %s\n", t.Status, t.Goal, t.Detail)
		}
	}
	for _, e := range r.rep.Errors {
		fmt.Fprintf(out, "ERROR %s\n", e)
	}
	fmt.Fprintf(out, "total %v\n", r.rep.Duration.Round(time.Second))
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100 || v == float64(int64(v)):
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// targets evaluates issue 9's goals against the figures.
func (r *runner) targets() {
	rep := r.rep
	t := func(goal string, ok bool, have bool, detail string) {
		st := "n/a"
		if have {
			st = "missed"
			if ok {
				st = "met"
			}
		}
		rep.Targets = append(rep.Targets, Target{goal, st, detail})
	}
	a, okA := rep.Get(nameLatA)
	b, okB := rep.Get(nameLatB)
	c, okC := rep.Get(nameLatC)
	d, okD := rep.Get(nameLatD)
	have := okA && okB
	addB := b.Median - a.Median
	if have && okC {
		addC := c.Median - a.Median
		t("latency added by hiersip (c) ≤ Kamailio's (b)", addC <= addB, true, fmt.Sprintf("(c) adds %.0f µs, (b) adds %.0f µs; ratio (c)/(b) of setup = %.2f", addC, addB, c.Median/b.Median))
	} else {
		t("latency added by hiersip (c) ≤ Kamailio's (b)", false, false, "rows missing")
	}
	if have && okD {
		addD := d.Median - a.Median
		t("latency added by hiersip (d) ≤ 2× Kamailio's (b)", addD <= 2*addB, true, fmt.Sprintf("(d) adds %.0f µs, 2×(b) = %.0f µs; ratio (d)/(b) of setup = %.2f", addD, 2*addB, d.Median/b.Median))
	} else {
		t("latency added by hiersip (d) ≤ 2× Kamailio's (b)", false, false, "rows missing")
	}
	kc, ok1 := rep.Get(nameCPUB)
	hc, ok2 := rep.Get(nameCPUCPerNode)
	t("CPU per call per hiersip node ≤ Kamailio's", hc.Median <= kc.Median, ok1 && ok2, fmt.Sprintf("hiersip (c) %.0f µs/call/node vs Kamailio %.0f µs/call (ratio %.2f)", hc.Median, kc.Median, safeDiv(hc.Median, kc.Median)))
	km, ok1 := rep.Get(nameMaxB)
	hm, ok2 := rep.Get(nameMaxC)
	t("strict max rate of (c) ≥ Kamailio's", hm.Median >= km.Median, ok1 && ok2 && km.Median > 0, fmt.Sprintf("hiersip (c) %.0f calls/s vs Kamailio %.0f calls/s (ratio %.2f)", hm.Median, km.Median, safeDiv(hm.Median, km.Median)))
	fo, ok := rep.Get(nameFailover)
	t("failover < 2 s", fo.Median < 2000, ok, fmt.Sprintf("median %.0f ms", fo.Median))
	if g, ok := rep.Get(nameLookupGrowth); ok {
		t("lookup latency grows no faster than log N", g.Median <= 1.5, true, fmt.Sprintf("latency ratio / log-N ratio between the smallest and largest domain = %.2f (≤ 1.5 counts as logarithmic)", g.Median))
	} else {
		t("lookup latency grows no faster than log N", false, false, "rows missing")
	}
	ir, ok := rep.Get(nameRSSIdle)
	t("idle node ≤ 50 MB RSS", ir.Median <= 50, ok, fmt.Sprintf("%.1f MB", ir.Median))
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Figure names used by the targets.
const (
	nameLatA         = "(a) INVITE→200 direct sipp→sipp"
	nameLatB         = "(b) INVITE→200 via Kamailio"
	nameLatC         = "(c) INVITE→200 hiersip same domain"
	nameLatD         = "(d) INVITE→200 hiersip 2 domains warm"
	nameLatE         = "(e) INVITE→200 hiersip 2 domains cold"
	nameCPUB         = "CPU/call Kamailio (b)"
	nameCPUC         = "CPU/call hiersip same domain (c)"
	nameCPUCPerNode  = "CPU/call/node hiersip (c)"
	nameMaxB         = "max strict rate (b) Kamailio"
	nameMaxC         = "max strict rate (c) hiersip same domain"
	nameFailover     = "failover: proxy killed → call succeeds"
	nameLookupGrowth = "lookup growth vs log N"
	nameRSSIdle      = "RSS idle node"
)

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
