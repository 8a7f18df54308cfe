package bench

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/testenv"
)

// TestBenchSmoke runs every section of the benchmark with tiny counts, each hiersip
// node a `hiersip node` process built from this module, and fails if the command
// breaks. The figures are not asserted, only that they are there.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hiersip, starts node processes, sipp and Kamailio")
	}
	testenv.RequireBinary(t, "sipp")     // Debian sip-tester
	testenv.RequireBinary(t, "kamailio") // Debian kamailio
	testenv.RequireBinary(t, "go")       // builds ./cmd/hiersip
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var logs bytes.Buffer
	cfg := Config{
		Quick: true, Runs: 1, Calls: 10, StepDuration: 2 * time.Second, Rates: []int{20}, CPURate: 20, CPUDuration: 2 * time.Second,
		ManyRegs: 50, RegFillRate: 100, RegRates: []int{20}, RegStepDuration: time.Second, ColdRuns: 1, FailoverRuns: 1,
		LookupSizes: []int{5, 10}, Lookups: 8, Registrations: 20, MediaCalls: []int{5}, MediaDuration: time.Second,
		Profile: true,
		OutDir:  t.TempDir(),
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	var out bytes.Buffer
	rep, err := Run(ctx, cfg, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Logf("log:\n%s", logs.String())
		t.Fatalf("Run: %v", err)
	}
	for _, name := range []string{nameLatA, nameLatB, nameLatC, nameLatD, nameLatE, nameAddB, nameAddC, nameAddD,
		nameMaxB, nameManyRegs, nameRegRate, nameRegToCall, nameFailover, nameRSSIdle, nameLookupGrowth, nameMediaMax, nameMediaAddLo,
		"idle CPU before (b): kamailio", "CPU/call (c) hiersip same domain, whole path"} {
		if _, ok := rep.Get(name); !ok {
			t.Errorf("figure %q missing", name)
		}
	}
	for k, procs := range map[string]int{"b": 1, "c": 2, "d": 4} {
		l := rep.Summary.Load[k]
		if l == nil || len(l.Procs) != procs || len(l.Mem) != procs {
			t.Errorf("load of path (%s): %+v, want %d processes", k, l, procs)
			continue
		}
		for _, p := range l.Procs {
			if p.PerCallUS <= 0 {
				t.Errorf("path (%s): %s used no CPU", k, p.Name)
			}
		}
		if k != "b" && len(l.Profiles) != procs {
			t.Errorf("path (%s): %d profiles, want %d", k, len(l.Profiles), procs)
		}
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		if l := rep.Summary.Ladders[k]; l == nil || len(l.Steps) == 0 || len(l.Steps[0].Tries) != stepTries {
			t.Errorf("ladder of path (%s): %+v", k, l)
		}
	}
	if len(rep.Targets) == 0 || !strings.Contains(out.String(), "| figure |") || !strings.Contains(out.String(), "how measured") {
		t.Errorf("no table or targets printed")
	}
	if _, err := os.Stat(cfg.OutDir + "/bench.json"); err != nil {
		t.Errorf("bench.json: %v", err)
	}
	if rep.NodeDir != "" {
		t.Errorf("node directory kept after a clean run: %s", rep.NodeDir)
	}
}

func TestRunRefusesUnknownSection(t *testing.T) {
	_, err := Run(context.Background(), Config{Sections: []string{"latency", "nope"}, OutDir: t.TempDir()}, &bytes.Buffer{})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Run with an unknown section: %v, want ErrConfig naming it", err)
	}
}
