package bench

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hiersip/hiersip/node/daemon"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses, as /proc prints it.
	stat := "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 1234 0 0 0 150 50 3 4 20 0 9 0 100 1000 200 18446744073709551615"
	st, err := parseProcStat(stat)
	if err != nil || st.ppid != 17 || st.cpu != 2*time.Second || st.children != 70*time.Millisecond {
		t.Fatalf("parseProcStat = %+v, %v; want ppid 17, cpu 2s (150+50 ticks), children 70ms (3+4)", st, err)
	}
	for _, bad := range []string{"", "4242 (x) S 1 2", "4242 no parens", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 6 7 8"} {
		if _, err := parseProcStat(bad); !errors.Is(err, errProcStat) {
			t.Errorf("parseProcStat(%q) = %v, want errProcStat", bad, err)
		}
	}
	// The running test's own process: some CPU, its parent.
	if c, err := procCPU(os.Getpid()); err != nil || c < 0 {
		t.Fatalf("procCPU(self) = %v, %v", c, err)
	}
	b, _ := os.ReadFile("/proc/self/stat")
	if st, err := parseProcStat(string(b)); err != nil || st.ppid != os.Getppid() {
		t.Fatalf("own stat: ppid %d, %v; want %d", st.ppid, err, os.Getppid())
	}
}

func TestTreeAndMachineCPU(t *testing.T) {
	stats := map[int]procStat{
		1:  {ppid: 0, cpu: time.Hour},                              // not ours
		10: {ppid: 1, cpu: time.Second, children: 2 * time.Second}, // the bench
		11: {ppid: 10, cpu: 3 * time.Second},                       // a node
		12: {ppid: 10, cpu: 4 * time.Second},                       // Kamailio
		13: {ppid: 12, cpu: 5 * time.Second},                       // its worker
		20: {ppid: 1, cpu: time.Minute},                            // another engineer's build
	}
	if got := treeCPU(stats, 10); got != 15*time.Second {
		t.Fatalf("treeCPU = %v, want 15s", got)
	}
	busy, err := parseMachineCPU("cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n")
	if err != nil || busy != 1610*time.Millisecond { // 100+5+50+3+2+1 ticks
		t.Fatalf("parseMachineCPU = %v, %v; want 1.61s", busy, err)
	}
	if _, err := os.ReadFile("/proc/stat"); err == nil {
		b, _ := os.ReadFile("/proc/stat")
		if busy, err := parseMachineCPU(string(b)); err != nil || busy <= 0 {
			t.Fatalf("this machine's /proc/stat: %v, %v", busy, err)
		}
	}
}

func TestParseProcStatus(t *testing.T) {
	m, err := parseProcStatus("Name:\tx\nVmPeak:\t  900 kB\nVmHWM:\t  5120 kB\nVmRSS:\t  4096 kB\nThreads:\t9\n")
	if err != nil || m.RSSKB != 4096 || m.HWMKB != 5120 {
		t.Fatalf("parseProcStatus = %+v, %v", m, err)
	}
	if _, err := parseProcStatus("Name:\tx\nVmRSS:\t1 kB\n"); err == nil {
		t.Fatal("status without VmHWM accepted")
	}
	if m, err := procMem(os.Getpid()); err != nil || m.RSSKB <= 0 || m.HWMKB < m.RSSKB {
		t.Fatalf("procMem(self) = %+v, %v", m, err)
	}
}

// fakeCPU is a cpuReader over a table; a PID missing from it has exited.
type fakeCPU map[int]time.Duration

func (f fakeCPU) read(pid int) (time.Duration, error) {
	c, ok := f[pid]
	if !ok {
		return 0, os.ErrNotExist
	}
	return c, nil
}

func TestCostsPerCallPerProcess(t *testing.T) {
	procs := []meteredProc{
		{Name: "kamailio", Role: "Kamailio", pids: func() []int { return []int{10, 11, 12} }}, // a group
		{Name: "pastry-1", Role: "caller's node", pids: func() []int { return []int{20} }},
		{Name: "gone", pids: func() []int { return []int{30} }},
	}
	t0 := time.Unix(1000, 0)
	cpu := fakeCPU{10: time.Second, 11: 2 * time.Second, 12: 0, 20: 5 * time.Second, 30: time.Second}
	a := snapshot(cpu.read, t0, procs)
	cpu[10] += 100 * time.Millisecond // the group used 300 ms in all
	cpu[11] += 150 * time.Millisecond
	cpu[12] += 50 * time.Millisecond
	cpu[20] += 1200 * time.Millisecond
	cpu[30] += time.Second
	b := snapshot(cpu.read, t0.Add(20*time.Second), procs)
	cs := costs(procs, a, b, 1000)
	want := map[string]float64{"kamailio": 300, "pastry-1": 1200, "gone": 1000}
	for _, c := range cs {
		if math.Abs(c.PerCallUS-want[c.Name]) > 1e-9 || c.Wall != 20*time.Second {
			t.Errorf("%s: %v µs/call over %v, want %v over 20s", c.Name, c.PerCallUS, c.Wall, want[c.Name])
		}
	}
	// Nothing is subtracted: the idle baseline only adds columns.
	base := &IdleBaseline{Procs: []IdleProc{{Name: "pastry-1", MsPerS: 5}}}
	cs = withIdle(cs, base, 1000)
	if cs[1].PerCallUS != 1200 || cs[1].IdleMsPerS != 5 || cs[1].IdlePerCallUS != 5 {
		t.Errorf("withIdle: %+v; want 1200 µs/call kept, idle 5 ms/s = 5 µs per call at 1000 calls/s", cs[1])
	}
	if cs[0].IdleMsPerS != 0 {
		t.Errorf("kamailio got an idle rate without a baseline: %+v", cs[0])
	}
	// A process that exited counts 0 from then on, never negative.
	delete(cpu, 30)
	if c := costs(procs, b, snapshot(cpu.read, t0.Add(21*time.Second), procs), 10); c[2].CPU != 0 {
		t.Errorf("exited process: %v, want 0", c[2].CPU)
	}
	if c := costs(procs, a, b, 0); c[0].PerCallUS != 0 {
		t.Errorf("no calls: %v µs/call, want 0", c[0].PerCallUS)
	}
}

func TestIdleBaselineHalves(t *testing.T) {
	procs := []meteredProc{{Name: "steady", pids: func() []int { return []int{1} }}, {Name: "settling", pids: func() []int { return []int{2} }}}
	t0 := time.Unix(0, 0)
	cpu := fakeCPU{1: 0, 2: 0}
	s0 := snapshot(cpu.read, t0, procs)
	cpu[1], cpu[2] = 100*time.Millisecond, 400*time.Millisecond // first 20 s: 5 and 20 ms/s
	s1 := snapshot(cpu.read, t0.Add(20*time.Second), procs)
	cpu[1], cpu[2] = 210*time.Millisecond, 440*time.Millisecond // second 20 s: 5.5 and 2 ms/s
	s2 := snapshot(cpu.read, t0.Add(40*time.Second), procs)
	b := newIdleBaseline(procs, s0, s1, s2)
	st, _ := b.rate("steady")
	se, _ := b.rate("settling")
	if math.Abs(st.MsPerS-5.25) > 1e-9 || !st.steady() {
		t.Errorf("steady: %+v (steady %v), want 5.25 ms/s, steady", st, st.steady())
	}
	if math.Abs(se.MsPerS-11) > 1e-9 || se.steady() {
		t.Errorf("settling: %+v (steady %v), want 11 ms/s, not steady", se, se.steady())
	}
	if b.Window != 40*time.Second {
		t.Errorf("window %v", b.Window)
	}
	// One clock tick of difference between short halves is not unsteadiness.
	q := IdleProc{First: 4, Second: 8, Tick: 4}
	if !q.steady() {
		t.Errorf("%+v: one tick apart, want steady", q)
	}
}

func run(ok bool) SippRun {
	if ok {
		return SippRun{Calls: 100, Successful: 100}
	}
	return SippRun{Calls: 100, Successful: 97, Retrans: 3, Aborted: true}
}

func TestLadder(t *testing.T) {
	step := func(rate int, tries ...bool) LadderStep {
		s := LadderStep{Rate: rate}
		for _, ok := range tries {
			s.Tries = append(s.Tries, run(ok))
		}
		return s
	}
	for _, tc := range []struct {
		name         string
		steps        []LadderStep
		strict, best int
		goesOn       bool
	}{
		{"nothing yet", nil, 0, 0, true},
		{"all pass", []LadderStep{step(250, true, true), step(500, true, true)}, 500, 500, true},
		{"one try fails: not strict, but the ladder goes on", []LadderStep{step(250, true, true), step(500, true, false)}, 250, 500, true},
		{"both fail: it stops", []LadderStep{step(250, true, true), step(500, true, false), step(1000, false, false)}, 250, 500, false},
		{"a step that passed above one that did not counts (a stall of the shared machine)",
			[]LadderStep{step(250, true, true), step(500, true, true), step(1000, false, true), step(1500, true, true), step(2000, false, false)}, 1500, 1500, false},
		{"best single try above the strict rate",
			[]LadderStep{step(250, true, true), step(500, false, true), step(1000, true, false), step(1500, false, false)}, 250, 1000, false},
		{"first step fails", []LadderStep{step(250, false, false)}, 0, 0, false},
		{"a step with one try is not passed", []LadderStep{step(250, true)}, 0, 250, true},
	} {
		strict, best := ladderSummary(tc.steps)
		if strict != tc.strict || best != tc.best || ladderGoesOn(tc.steps) != tc.goesOn {
			t.Errorf("%s: strict %d best %d goes on %v; want %d %d %v", tc.name, strict, best, ladderGoesOn(tc.steps), tc.strict, tc.best, tc.goesOn)
		}
	}
	// A try passes only whole, with nothing failed or retransmitted on either side.
	for _, bad := range []SippRun{
		{Calls: 10, Successful: 10, UASRetrans: 1},
		{Calls: 10, Successful: 10, UASFailed: 1},
		{Calls: 10, Successful: 9},
		{Calls: 10, Successful: 10, Aborted: true},
		{Calls: 10, Successful: 10, Failed: 1},
	} {
		if bad.clean() {
			t.Errorf("%+v counted as a pass", bad)
		}
	}
	if !(SippRun{Calls: 10, Successful: 10, UASRetrans: -1, UASFailed: -1}).clean() {
		t.Error("a clean run with the uas's counters unknown failed")
	}
}

func TestParseSippStat(t *testing.T) {
	data := "StartTime;SuccessfulCall(C);FailedCall(C);Retransmissions(C)\n1;10;0;0\n2;20;1;3\n3;2"
	st, ok := parseSippStat(data) // the last line is still being written
	if !ok || st != (sippStat{Successful: 20, Failed: 1, Retrans: 3}) {
		t.Fatalf("parseSippStat = %+v, %v", st, ok)
	}
	if _, ok := parseSippStat("header only\n"); ok {
		t.Fatal("a header without a line parsed")
	}
}

func TestParsePprofTop(t *testing.T) {
	out := `File: hiersip
Showing nodes accounting for 2.5s, 100% of 2.5s total
      flat  flat%   sum%        cum   cum%
     0.50s 20.00% 20.00%      0.50s 20.00%  internal/runtime/syscall/linux.Syscall6
     0.10s  4.00% 24.00%      0.60s 24.00%  runtime.gcBgMarkWorker
     0.05s  2.00% 26.00%      0.25s 10.00%  runtime.mallocgc (inline)
`
	rows := parsePprofTop(out)
	if len(rows) != 3 || rows[1].name != "runtime.gcBgMarkWorker" || rows[1].cumPct != 24 || rows[0].flatPct != 20 || rows[2].name != "runtime.mallocgc (inline)" {
		t.Fatalf("parsePprofTop = %+v", rows)
	}
}

// TestNodeConfigIsValid checks that the configuration file the bench writes for a node
// is one `hiersip node` accepts.
func TestNodeConfigIsValid(t *testing.T) {
	dir := t.TempDir()
	s := nodeSpec{Domain: "pastry", Known: []string{"can"}, GlobalSeed: true, OptOut: true, MediaPorts: "10000-11999", MediaSessions: 500, MediaPerPeer: 400,
		Bootstrap: []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWRHQ2H16pTZoaHFSP455TpJPg5QGSiNkMMG2pVZbsZxLG"}}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(s.config(filepath.Join(dir, "data"))), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := daemon.Load(path, nil)
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		t.Fatalf("config rejected: %v\n%s", err, s.config(filepath.Join(dir, "data")))
	}
	if c.Domain != "pastry" || !c.GlobalSeed || !c.Election.OptOut || c.SIP.Limits.SourceRate != 0 || c.Media.Ports != "10000-11999" ||
		c.Media.MaxSessions != 500 || c.Media.MaxSessionsPerPeer != 400 || c.Bootstrap.MDNS || len(c.Bootstrap.Peers) != 1 || !c.Admin.Pprof {
		t.Fatalf("config read back as %+v", c)
	}
}

func TestMachineCores(t *testing.T) {
	t0 := time.Unix(0, 0)
	a := machineSample{at: t0, busy: 10 * time.Second, ours: 4 * time.Second}
	b := machineSample{at: t0.Add(10 * time.Second), busy: 25 * time.Second, ours: 9 * time.Second} // 15 s busy, 5 s ours
	others, ours := cores(a, b)
	if math.Abs(others-1) > 1e-9 || math.Abs(ours-0.5) > 1e-9 {
		t.Fatalf("cores = %v, %v; want 1 core for the others, 0.5 for the bench", others, ours)
	}
}
