package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PathLoad is what the processes on one path used while sipp's uac ran at a fixed rate
// for the measured window: CPU per call of each, their memory, and (for hiersip nodes)
// their allocations, with CPU and allocation profiles under --profile.
type PathLoad struct {
	Path   string     `json:"path"`
	Rate   int        `json:"rate"`
	Result SippRun    `json:"sipp"`
	Procs  []ProcCost `json:"procs"`
	// OffPathUS is the CPU per call of the cluster's nodes not on the path together.
	OffPathUS float64     `json:"off_path_us"`
	Mem       []ProcMem   `json:"mem"`
	Alloc     []ProcAlloc `json:"alloc,omitempty"`
	Profiles  []Profile   `json:"profiles,omitempty"`
	// UASCPU is the sipp uas's CPU over the window, GenCPU the uac's.
	UASCPU time.Duration `json:"uas_cpu_ns"`
	// Held is, per node of the path, the most SIP transactions in flight and media
	// sessions its /metrics showed, sampled every 500 ms over the window.
	Held []ProcHeld `json:"held,omitempty"`
}

// ProcHeld is what a node held at most during the window.
type ProcHeld struct {
	Name          string  `json:"name"`
	InFlight      float64 `json:"in_flight"`
	MediaSessions float64 `json:"media_sessions"`
}

// totalUS is the CPU per call of the whole path.
func (l *PathLoad) totalUS() float64 {
	var t float64
	for _, p := range l.Procs {
		t += p.PerCallUS
	}
	return t
}

// maxUS is the highest CPU per call of one process of the path, and its name.
func (l *PathLoad) maxUS() (float64, string) {
	var m float64
	var who string
	for _, p := range l.Procs {
		if p.PerCallUS > m {
			m, who = p.PerCallUS, p.Name
		}
	}
	return m, who
}

// ProcMem is a process's resident memory during the window (MB): the highest VmRSS
// sampled (every 250 ms), the median of the samples of the window's last third, and
// VmHWM at its end (the highest since the process started).
type ProcMem struct {
	Name     string  `json:"name"`
	PeakMB   float64 `json:"peak_mb"`
	SteadyMB float64 `json:"steady_mb"`
	HWMMB    float64 `json:"hwm_mb"`
}

// ProcAlloc is a Go process's allocation per call over the window, from the Go
// runtime's counters on its /metrics (go_memstats_mallocs_total,
// go_memstats_alloc_bytes_total, go_gc_duration_seconds_count).
type ProcAlloc struct {
	Name         string  `json:"name"`
	ObjectsCall  float64 `json:"objects_per_call"`
	BytesCall    float64 `json:"bytes_per_call"`
	GCsPer1000   float64 `json:"gcs_per_1000_calls"`
	HeapInuseMB  float64 `json:"heap_inuse_mb"`
	GoroutinesAt float64 `json:"goroutines"`
}

// Profile is the summary of a node's CPU and allocation profiles of the window.
type Profile struct {
	Name      string `json:"name"`
	CPUFile   string `json:"cpu_file"`
	AllocFile string `json:"alloc_file"`
	// GCShare is the share of the profile's CPU samples in the garbage collector
	// (runtime.gcBgMarkWorker, gcAssistAlloc, bgsweep, bgscavenge, cumulative), %;
	// MallocShare in runtime.mallocgc (allocation, with the GC assists it makes);
	// -1 when `go tool pprof` was not available.
	GCShare     float64 `json:"gc_share_pct"`
	MallocShare float64 `json:"malloc_share_pct"`
	// SyscallPct is the share in system calls other than futex
	// (internal/runtime/syscall/linux.Syscall6: socket reads and writes), FutexPct in
	// runtime.futex (threads put to sleep and woken: goroutine hand-offs).
	SyscallPct float64  `json:"syscall_share_pct"`
	FutexPct   float64  `json:"futex_share_pct"`
	Top        []string `json:"top,omitempty"`        // flat top of the CPU profile
	TopCum     []string `json:"top_cum,omitempty"`    // cumulative, hiersip and sipgo functions
	TopAllocs  []string `json:"top_allocs,omitempty"` // flat top of alloc_objects
}

func (r *runner) cpuSection(ctx context.Context) error {
	if r.sipp == "" {
		r.skip(SectionCPU, "all", "sipp missing (apt-get install sip-tester)")
		return nil
	}
	var errs []error
	for _, k := range []string{"b", "c", "d"} {
		if k == "b" && r.kamailio == "" {
			r.skip(SectionCPU, "CPU/call (b) Kamailio", "kamailio missing (apt-get install kamailio)")
			continue
		}
		if err := r.cpuPath(ctx, k); err != nil {
			errs = append(errs, fmt.Errorf("(%s): %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// cpuPath measures path k in an env of its own: the idle baseline first, then the warm-up
// calls, then the measured step.
func (r *runner) cpuPath(ctx context.Context, k string) error {
	e, p, err := r.envFor(ctx, k, true)
	if err != nil {
		return err
	}
	defer e.Close()
	if err := warmUp(ctx, p); err != nil {
		return err
	}
	if err := r.waitRecovered(ctx, e); err != nil {
		return err
	}
	l, err := r.loadStep(ctx, e, p, r.cfg.CPURate, r.cfg.CPUDuration, r.cfg.Profile)
	if err != nil {
		return err
	}
	r.rep.Summary.Load[k] = l
	r.addLoad(p, l)
	return nil
}

// loadStep runs sipp's uac along p at rate for dur (not cut at a failure) and meters
// every process of the run over it.
func (r *runner) loadStep(ctx context.Context, e *env, p *path, rate int, dur time.Duration, profile bool) (*PathLoad, error) {
	l := &PathLoad{Path: p.key, Rate: rate}
	before := map[string]map[string]float64{}
	for _, n := range p.nodes {
		m, err := n.metrics(ctx)
		if err != nil {
			return nil, err
		}
		before[n.name] = m
	}
	// Memory, sampled every 250 ms.
	memProcs := p.procs
	stopMem := make(chan struct{})
	samples := make([][]float64, len(memProcs))
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			for i, mp := range memProcs {
				var kb int64
				for _, pid := range mp.pids() {
					kb += rssKB(pid)
				}
				samples[i] = append(samples[i], float64(kb)/1024)
			}
			select {
			case <-stopMem:
				return
			case <-t.C:
			}
		}
	})
	l.Held = make([]ProcHeld, len(p.nodes))
	for i, n := range p.nodes {
		l.Held[i].Name = n.name
	}
	wg.Go(func() {
		for {
			for i, n := range p.nodes {
				if m, err := n.metrics(ctx); err == nil {
					l.Held[i].InFlight = max(l.Held[i].InFlight, m["hiersip_sip_transactions_in_flight"])
					l.Held[i].MediaSessions = max(l.Held[i].MediaSessions, m["hiersip_media_sessions"])
				}
			}
			select {
			case <-stopMem:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	var profErrs []error
	var pmu sync.Mutex
	if profile {
		pd := max(dur-time.Second, time.Second)
		for _, n := range p.nodes {
			cpuFile := filepath.Join(r.dir, fmt.Sprintf("cpu-%s-%s.pprof", p.key, n.name))
			allocFile := filepath.Join(r.dir, fmt.Sprintf("allocs-%s-%s.pprof", p.key, n.name))
			l.Profiles = append(l.Profiles, Profile{Name: n.name, CPUFile: cpuFile, AllocFile: allocFile, GCShare: -1, MallocShare: -1, SyscallPct: -1, FutexPct: -1})
			for kind, file := range map[string]string{"profile": cpuFile, "allocs": allocFile} {
				wg.Go(func() {
					if err := n.profile(ctx, kind, pd, file); err != nil {
						pmu.Lock()
						profErrs = append(profErrs, err)
						pmu.Unlock()
					}
				})
			}
		}
	}
	uas0, _ := procCPU(e.uas.pid())
	s0 := snapshot(procCPU, time.Now(), e.all)
	res, err := runSippUAC(ctx, r.sipp, e.sippDir, e.uas, p.target, p.ruri, rate, dur, false)
	s1 := snapshot(procCPU, time.Now(), e.all)
	uas1, _ := procCPU(e.uas.pid())
	close(stopMem)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if !res.clean() {
		res.Diag = e.diag(ctx)
	}
	l.Result, l.UASCPU = res, uas1-uas0
	all := withIdle(costs(e.all, s0, s1, res.Successful), e.idle, float64(res.Successful)/res.Elapsed.Seconds())
	for _, c := range all {
		if slices.ContainsFunc(p.procs, func(mp meteredProc) bool { return mp.Name == c.Name }) {
			continue
		}
		l.OffPathUS += c.PerCallUS
	}
	for _, mp := range p.procs {
		for _, c := range all {
			if c.Name == mp.Name {
				c.Role = mp.Role
				l.Procs = append(l.Procs, c)
			}
		}
	}
	for i, mp := range memProcs {
		s := samples[i]
		pm := ProcMem{Name: mp.Name}
		if len(s) > 0 {
			pm.PeakMB = slices.Max(s)
			pm.SteadyMB = pctl(s[len(s)*2/3:], 0.5)
		}
		for _, pid := range mp.pids() {
			m, _ := procMem(pid)
			pm.HWMMB += float64(m.HWMKB) / 1024
		}
		l.Mem = append(l.Mem, pm)
	}
	for _, n := range p.nodes {
		m, err := n.metrics(ctx)
		if err != nil {
			return nil, err
		}
		b := before[n.name]
		calls := float64(max(res.Successful, 1))
		l.Alloc = append(l.Alloc, ProcAlloc{Name: n.name,
			ObjectsCall:  (m["go_memstats_mallocs_total"] - b["go_memstats_mallocs_total"]) / calls,
			BytesCall:    (m["go_memstats_alloc_bytes_total"] - b["go_memstats_alloc_bytes_total"]) / calls,
			GCsPer1000:   (m["go_gc_duration_seconds"] - b["go_gc_duration_seconds"]) * 1000 / calls,
			HeapInuseMB:  m["go_memstats_heap_inuse_bytes"] / (1 << 20),
			GoroutinesAt: m["go_goroutines"],
		})
	}
	if profile {
		for i := range l.Profiles {
			summarizeProfile(ctx, r.hiersip, &l.Profiles[i])
		}
	}
	if len(profErrs) > 0 {
		r.log.Warn("bench: profiles", "err", errors.Join(profErrs...))
	}
	return l, nil
}

// addLoad records the figures of l.
func (r *runner) addLoad(p *path, l *PathLoad) {
	res := l.Result
	note := "a clean run"
	if !res.clean() {
		note = fmt.Sprintf("NOT clean: %d failed, %d retransmissions (uac), %d (uas); the nodes' /metrics after it: %s", res.Failed, res.Retrans, res.UASRetrans, res.Diag)
	}
	gen := fmt.Sprintf("sipp uac used %.0f %%, uas %.0f %% of a core", 100*res.GenCPU.Seconds()/res.Elapsed.Seconds(), 100*l.UASCPU.Seconds()/res.Elapsed.Seconds())
	win := fmt.Sprintf("during the %.1f s of sipp at %d calls/s (%d calls ok, %s; %s)", res.Elapsed.Seconds(), res.Rate, res.Successful, note, gen)
	r.add(SectionCPU, fmt.Sprintf("CPU/call %s, whole path", p.label), "µs",
		fmt.Sprintf("utime+stime of the %d process(es) on the path (/proc/<pid>/stat) %s ÷ calls ok; nothing subtracted", len(l.Procs), win), []float64{l.totalUS()})
	for _, c := range l.Procs {
		m := fmt.Sprintf("utime+stime of this process %s ÷ calls ok; its idle rate before any load was %.1f ms/s, %.1f µs per call at this rate (not subtracted)",
			win, c.IdleMsPerS, c.IdlePerCallUS)
		r.add(SectionCPU, fmt.Sprintf("CPU/call %s: %s, %s", p.label, c.Name, c.Role), "µs", m, []float64{c.PerCallUS})
	}
	if len(p.nodes) > 0 {
		r.add(SectionCPU, fmt.Sprintf("CPU/call %s: processes off the path", p.label), "µs",
			"the cluster's other nodes together, same window", []float64{l.OffPathUS})
	}
	for _, m := range l.Mem {
		of := ""
		if p.key == "b" {
			of = " summed over Kamailio's processes (its shared memory counted in each that touched it)"
		}
		r.add(SectionCPU, fmt.Sprintf("RSS %s: %s steady", p.label, m.Name), "MB", fmt.Sprintf("median VmRSS (/proc/<pid>/status, every 250 ms)%s over the last third of the window; peak sampled %.1f MB, VmHWM %.1f MB", of, m.PeakMB, m.HWMMB), []float64{m.SteadyMB})
		r.add(SectionCPU, fmt.Sprintf("RSS %s: %s peak", p.label, m.Name), "MB", "highest VmRSS sampled during the window", []float64{m.PeakMB})
	}
	for _, h := range l.Held {
		r.add(SectionCPU, fmt.Sprintf("held %s: %s", p.label, h.Name), "tx", fmt.Sprintf("the most SIP transactions in flight (hiersip_sip_transactions_in_flight, every 500 ms) during the window; media sessions at most %.0f", h.MediaSessions), []float64{h.InFlight})
	}
	for _, a := range l.Alloc {
		r.add(SectionCPU, fmt.Sprintf("allocations/call %s: %s", p.label, a.Name), "objects", fmt.Sprintf("Δ go_memstats_mallocs_total of its /metrics over the window ÷ calls ok; %.1f KB/call (Δ alloc_bytes_total), %.1f GCs per 1000 calls, heap in use at the end %.1f MB, %.0f goroutines",
			a.BytesCall/1024, a.GCsPer1000, a.HeapInuseMB, a.GoroutinesAt), []float64{a.ObjectsCall})
	}
	for _, pr := range l.Profiles {
		if pr.GCShare < 0 {
			continue
		}
		r.add(SectionCPU, fmt.Sprintf("GC share of CPU %s: %s", p.label, pr.Name), "%", fmt.Sprintf("CPU profile of the window (%s): cumulative share of runtime.gcBgMarkWorker, gcAssistAlloc, bgsweep and bgscavenge; runtime.mallocgc %.1f %%, I/O syscalls %.1f %%, futex %.1f %%",
			filepath.Base(pr.CPUFile), pr.MallocShare, pr.SyscallPct, pr.FutexPct), []float64{pr.GCShare})
	}
}

// summarizeProfile reads pr's profiles with `go tool pprof` (when the go command is
// found) and fills in its shares and tops; top listings are also written next to the
// profiles as .txt.
func summarizeProfile(ctx context.Context, bin string, pr *Profile) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return
	}
	run := func(args ...string) string {
		cmd := exec.CommandContext(ctx, goCmd, append([]string{"tool", "pprof"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return string(out)
	}
	top := run("-top", "-nodecount=25", bin, pr.CPUFile)
	cum := run("-top", "-cum", "-nodecount=3000", bin, pr.CPUFile)
	allocs := run("-top", "-sample_index=alloc_objects", "-nodecount=25", bin, pr.AllocFile)
	writeText(strings.TrimSuffix(pr.CPUFile, ".pprof")+".txt", top+"\n"+cum)
	writeText(strings.TrimSuffix(pr.AllocFile, ".pprof")+".txt", allocs)
	rows := parsePprofTop(cum)
	share := func(names ...string) float64 {
		var s float64
		for _, row := range rows {
			if slices.Contains(names, row.name) {
				s += row.cumPct
			}
		}
		return s
	}
	if len(rows) == 0 {
		return
	}
	pr.GCShare = share("runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge")
	pr.MallocShare = share("runtime.mallocgc")
	pr.SyscallPct = share("internal/runtime/syscall/linux.Syscall6")
	pr.FutexPct = share("runtime.futex")
	for _, row := range parsePprofTop(top) {
		if len(pr.Top) < 12 {
			pr.Top = append(pr.Top, fmt.Sprintf("%.1f%% %s", row.flatPct, row.name))
		}
	}
	for _, row := range rows {
		if len(pr.TopCum) < 20 && (strings.Contains(row.name, "hiersip/") || strings.Contains(row.name, "sipgo")) {
			pr.TopCum = append(pr.TopCum, fmt.Sprintf("%.1f%% %s", row.cumPct, row.name))
		}
	}
	for _, row := range parsePprofTop(allocs) {
		if len(pr.TopAllocs) < 12 {
			pr.TopAllocs = append(pr.TopAllocs, fmt.Sprintf("%.1f%% %s", row.flatPct, row.name))
		}
	}
}

func writeText(file, s string) {
	if s != "" {
		_ = os.WriteFile(file, []byte(s), 0o644)
	}
}

// pprofRow is one row of `go tool pprof -top`.
type pprofRow struct {
	name            string
	flatPct, cumPct float64
}

// parsePprofTop reads the rows of `go tool pprof -top` output: after the header
// "flat  flat%   sum%        cum   cum%", each row is flat, flat%, sum%, cum, cum%,
// then the function.
func parsePprofTop(out string) []pprofRow {
	var rows []pprofRow
	started := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if !started {
			started = len(f) >= 5 && f[0] == "flat" && f[1] == "flat%"
			continue
		}
		if len(f) < 6 {
			continue
		}
		fp, err1 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		cp, err2 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		rows = append(rows, pprofRow{name: strings.Join(f[5:], " "), flatPct: fp, cumPct: cp})
	}
	return rows
}

// pctl is the q-quantile of s (nearest rank).
func pctl(s []float64, q float64) float64 {
	c := slices.Clone(s)
	slices.Sort(c)
	return quantile(c, q)
}
