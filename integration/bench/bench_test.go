package bench

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/testenv"
)

func TestMain(m *testing.M) {
	// Run starts its nodes in a re-execution of this test binary.
	MaybeRunHelper()
	os.Exit(m.Run())
}

// TestBenchSmoke runs every section of the benchmark with tiny counts and
// fails if the command breaks. The figures are not asserted.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes, sipp and Kamailio")
	}
	testenv.RequireBinary(t, "sipp")     // Debian sip-tester
	testenv.RequireBinary(t, "kamailio") // Debian kamailio
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var logs bytes.Buffer
	cfg := Config{
		Quick: true, Runs: 1, Calls: 5, StepDuration: 2 * time.Second, Rates: []int{20}, CPURate: 20,
		LookupSizes: []int{5, 10}, Lookups: 8, Registrations: 20, MediaCalls: []int{5}, MediaDuration: time.Second,
		OutDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	var out bytes.Buffer
	rep, err := Run(ctx, cfg, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Logf("log:\n%s", logs.String())
		t.Fatalf("Run: %v", err)
	}
	for _, name := range []string{nameLatA, nameLatB, nameLatC, nameLatD, nameLatE, nameCPUB, nameFailover, nameRSSIdle, nameLookupGrowth, nameMediaMax, nameMediaAddLo} {
		if _, ok := rep.Get(name); !ok {
			t.Errorf("figure %q missing", name)
		}
	}
	if !strings.Contains(out.String(), "how measured") {
		t.Errorf("no table printed")
	}
	if _, err := os.Stat(cfg.OutDir + "/bench.json"); err != nil {
		t.Errorf("bench.json: %v", err)
	}
}
