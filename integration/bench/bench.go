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
	"runtime"
	"slices"
	"strings"
	"time"
)

// Sections of the benchmark, in the order they run.
const (
	SectionLatency    = "latency"
	SectionCPU        = "cpu"
	SectionThroughput = "throughput"
	SectionManyRegs   = "manyregs"
	SectionRegister   = "register"
	SectionLookup     = "lookup"
	SectionFailover   = "failover"
	SectionFootprint  = "footprint"
	SectionMedia      = "media"
)

// AllSections lists every section, in the order they run. The CPU and memory section
// comes before the rate ladder, so that the nodes' memory is measured before the
// ladder's overloaded steps grew their heaps.
var AllSections = []string{SectionLatency, SectionCPU, SectionThroughput, SectionManyRegs, SectionRegister, SectionLookup, SectionFailover, SectionFootprint, SectionMedia}

// Config configures a run. The zero value runs the full benchmark.
type Config struct {
	// Quick shortens every section (fewer runs, calls and seconds), for CI.
	Quick bool
	// Sections restricts the run to these sections (default AllSections).
	Sections []string
	// Runs × Calls calls are placed on each path to measure setup latency, at
	// LatencyRate calls/s (defaults 5 × 100 at 100 calls/s; quick 2 × 20).
	Runs, Calls int
	LatencyRate int
	// StepDuration is how long each try of the strict rate ladder runs (default 10 s;
	// quick 3 s).
	StepDuration time.Duration
	// Rates are the ladder's call rates, in increasing order (default 250, 500, 1000,
	// 1500, 2000, 3000, 4000, 5000, 6000, 8000; quick 50, 100). Each is tried twice.
	Rates []int
	// CPURate is the call rate at which the CPU time per call and the memory of each
	// process on a path are measured, over CPUDuration (defaults 1000 calls/s for 40 s;
	// quick 100 for 5 s). The idle baseline before any load is as long.
	CPURate     int
	CPUDuration time.Duration
	// ManyRegs is the number of registrations held by the callee's node in the manyregs
	// section (default 10,000; quick 300), registered at RegFillRate REGISTERs/s
	// (default 500).
	ManyRegs, RegFillRate int
	// RegRates are the offered rates of the open-loop REGISTER ladder, each for
	// RegStepDuration (defaults 250, 500, 1000, 2000 /s for 10 s; quick 50, 100 for 2 s);
	// a step passes when every REGISTER got its 200 OK within RegBound (default 1 s).
	RegRates        []int
	RegStepDuration time.Duration
	RegBound        time.Duration
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
	// Registrations held by the node of the footprint section (default 1000; quick 200).
	Registrations int
	// OutDir receives bench.json, sipp and Kamailio files and profiles
	// (default "bench-results").
	OutDir string
	// Profile fetches, from every hiersip node on the paths of the CPU section, a CPU
	// profile and an allocation profile of the measured window (into OutDir), and
	// summarises them with `go tool pprof` when the go command is found.
	Profile bool
	// Logger receives progress (default: slog.Default()).
	Logger *slog.Logger
	// SippPath and KamailioPath override the tools' paths (default: $PATH).
	SippPath, KamailioPath string
	// HiersipPath is the hiersip binary the nodes run (default: built from the module
	// in the working directory with go build).
	HiersipPath string
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
	dur := func(v, full, quick time.Duration) time.Duration {
		if v != 0 {
			return v
		}
		if c.Quick {
			return quick
		}
		return full
	}
	ints := func(v, full, quick []int) []int {
		if len(v) != 0 {
			return v
		}
		if c.Quick {
			return quick
		}
		return full
	}
	c.Runs = pick(c.Runs, 5, 2)
	c.Calls = pick(c.Calls, 100, 20)
	c.LatencyRate = pick(c.LatencyRate, 100, 100)
	c.Lookups = pick(c.Lookups, 200, 30)
	c.FailoverRuns = pick(c.FailoverRuns, 3, 1)
	c.ColdRuns = pick(c.ColdRuns, 3, 1)
	c.Registrations = pick(c.Registrations, 1000, 200)
	c.CPURate = pick(c.CPURate, 1000, 100)
	c.ManyRegs = pick(c.ManyRegs, 10000, 300)
	c.RegFillRate = pick(c.RegFillRate, 500, 200)
	c.StepDuration = dur(c.StepDuration, 10*time.Second, 3*time.Second)
	c.CPUDuration = dur(c.CPUDuration, 40*time.Second, 5*time.Second)
	c.RegStepDuration = dur(c.RegStepDuration, 10*time.Second, 2*time.Second)
	c.RegBound = dur(c.RegBound, time.Second, time.Second)
	c.MediaDuration = dur(c.MediaDuration, 10*time.Second, 3*time.Second)
	c.Rates = ints(c.Rates, []int{250, 500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000}, []int{50, 100})
	c.RegRates = ints(c.RegRates, []int{250, 500, 1000, 2000}, []int{50, 100})
	c.LookupSizes = ints(c.LookupSizes, []int{10, 100, 1000}, []int{10, 50})
	c.MediaCalls = ints(c.MediaCalls, []int{10, 100, 250, 500, 750, 1000, 1500, 2000}, []int{10, 50})
	if len(c.Sections) == 0 {
		c.Sections = AllSections
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
	// Commit is `git describe --always --dirty` of the working directory; Cores the
	// machine's CPUs; LoadStart and LoadEnd /proc/loadavg (1, 5, 15 min) at the start
	// and end of the run: the machine may be shared.
	Commit    string `json:"commit"`
	Cores     int    `json:"cores"`
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
	// Machine is the CPU the rest of the machine used meanwhile.
	Machine Machine `json:"machine"`
	// Summary is the headline of issue 17, path by path; Targets its goals as ratios
	// to Kamailio measured in the same run.
	Summary Summary  `json:"summary"`
	Figures []Figure `json:"figures"`
	Targets []Target `json:"targets"`
	Errors  []string `json:"errors,omitempty"`
	// NodeDir is the directory of the node processes' configurations, data and logs,
	// kept when the run failed.
	NodeDir string `json:"node_dir,omitempty"`
}

// Target is one goal of issue 17 (or an earlier issue) and whether this run met it.
type Target struct {
	Goal   string `json:"goal"`
	Status string `json:"status"` // "met", "missed" or "n/a"
	// Value is hiersip's figure, Reference Kamailio's (when the goal is a ratio to it),
	// Ratio = Value ÷ Reference and Limit the bound the goal sets on the ratio (or on
	// Value, without a reference).
	Value     float64 `json:"value,omitempty"`
	Reference float64 `json:"reference,omitempty"`
	Ratio     float64 `json:"ratio,omitempty"`
	Limit     float64 `json:"limit,omitempty"`
	Detail    string  `json:"detail"`
}

// ErrSection is returned (joined) when a section fails.
var ErrSection = errors.New("bench: section failed")

// ErrConfig is returned for a Config that cannot run.
var ErrConfig = errors.New("bench: bad configuration")

type runner struct {
	cfg      Config
	log      *slog.Logger
	rep      *Report
	sipp     string
	kamailio string
	hiersip  string
	dir      string
	nodeDir  string // the run's node directory (configurations, data, logs)
	mediaK   int    // next media port block
}

// Run runs the benchmark's sections, prints the table to out and writes the
// report as JSON to OutDir/bench.json. A failing section is recorded in the
// report and the run goes on; the error joins all section errors.
//
// Every hiersip node runs as a `hiersip node --config FILE` process of its own: Run
// builds ./cmd/hiersip of the module in the working directory (with the go command)
// unless HiersipPath names a binary, and writes each node's configuration and data
// directory into a temporary directory, removed after a run without errors and kept
// (its path printed) otherwise.
func Run(ctx context.Context, cfg Config, out io.Writer) (*Report, error) {
	cfg = cfg.withDefaults()
	for _, s := range cfg.Sections {
		if !slices.Contains(AllSections, s) {
			return nil, fmt.Errorf("%w: unknown section %q (sections: %s)", ErrConfig, s, strings.Join(AllSections, ", "))
		}
	}
	r := &runner{cfg: cfg, log: cfg.Logger, rep: &Report{Started: time.Now().UTC(), Quick: cfg.Quick,
		Commit: gitDescribe(), Cores: runtime.NumCPU(), LoadStart: loadAvg(),
		Summary: Summary{Load: map[string]*PathLoad{}, Ladders: map[string]*Ladder{}, Idle: map[string]*IdleBaseline{}}}}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.OutDir)
	if err != nil {
		return nil, err
	}
	r.dir = dir
	r.nodeDir, err = os.MkdirTemp("", "hiersip-bench-")
	if err != nil {
		return nil, err
	}
	r.sipp = lookTool(cfg.SippPath, "sipp")
	r.kamailio = lookTool(cfg.KamailioPath, "kamailio")
	r.hiersip = cfg.HiersipPath
	if r.hiersip == "" {
		if r.hiersip, err = buildHiersip(ctx, r.nodeDir); err != nil {
			_ = os.RemoveAll(r.nodeDir)
			return nil, err
		}
	}
	fmt.Fprintf(out, "hiersip-bench (%s) at %s; %d cores, load %s; hiersip: %s; sipp: %s; kamailio: %s\n", modeName(cfg.Quick), r.rep.Commit,
		r.rep.Cores, r.rep.LoadStart, r.hiersip, orMissing(r.sipp, "sip-tester"), orMissing(r.kamailio, "kamailio"))
	var errs []error
	meter := startMachineMeter()
	var machineSections []MachineSection
	sections := map[string]func(context.Context) error{
		SectionLatency: r.latency, SectionCPU: r.cpuSection, SectionThroughput: r.throughput,
		SectionManyRegs: r.manyRegs, SectionRegister: r.register,
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
		m0 := meter.sample()
		r.log.Info("bench: section", "name", s)
		if err := sections[s](ctx); err != nil {
			r.log.Error("bench: section failed", "name", s, "err", err)
			r.rep.Errors = append(r.rep.Errors, s+": "+err.Error())
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrSection, s, err))
		}
		others, ours := cores(m0, meter.sample())
		machineSections = append(machineSections, MachineSection{Section: s, OthersCores: others, OursCores: ours})
		r.log.Info("bench: section done", "name", s, "took", time.Since(start).Round(time.Millisecond), "other_processes_cores", fmt.Sprintf("%.2f", others))
	}
	r.rep.Machine = meter.done(machineSections)
	r.rep.Duration = time.Since(r.rep.Started)
	r.rep.LoadEnd = loadAvg()
	if len(errs) > 0 {
		r.rep.NodeDir = r.nodeDir
	} else {
		_ = os.RemoveAll(r.nodeDir)
	}
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
	if r.rep.NodeDir != "" {
		fmt.Fprintf(out, "node configurations, data and logs kept in %s\n", r.rep.NodeDir)
	}
	return r.rep, errors.Join(errs...)
}

// gitDescribe names the commit of the working directory ("" outside a repository).
func gitDescribe() string {
	b, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// mediaBlock returns the next media port range of a node: blocks of 2,000 ports
// (1,000 streams, the default media.max_sessions) from 10000, so that the nodes of a
// run do not take each other's ports.
func (r *runner) mediaBlock() string {
	k := r.mediaK % 26
	r.mediaK++
	lo := 10000 + 2000*k
	return fmt.Sprintf("%d-%d", lo, lo+1999)
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

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
