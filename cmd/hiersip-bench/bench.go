package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hiersip/hiersip/integration/bench"
	"github.com/spf13/cobra"
)

func newBenchCmd() *cobra.Command {
	var (
		cfg      bench.Config
		sections []string
		verbose  bool
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "hiersip-bench",
		Short: "Measure hiersip against sipp alone and a central Kamailio",
		Long: `Run hiersip's benchmark on loopback and print one table (median and p95 of
each figure, with how it was measured), then the summary of issue 17 with its
targets as ratios to Kamailio measured in the same run; all of it is also
written as JSON to --out/bench.json.

Every hiersip node is a "hiersip node --config FILE" process of its own, as
users run them: the bench builds ./cmd/hiersip of the module in the working
directory (or runs --hiersip) and writes the configurations and data
directories into a temporary directory, removed after a clean run and kept
(its path printed) after a failure. Kamailio (tm, registrar, 1 worker,
-x tlsf -m 1024) and sipp are started by the bench.

  latency     INVITE→200 OK at 100 calls/s: (a) direct to sipp's uas, (b) through
              Kamailio, (c) hiersip same domain (2 nodes), (d) two domains
              (4 nodes), (e) cold; the latency each path adds to (a)
  cpu         an idle baseline of every process before any load, then sipp at
              1,000 calls/s along (b), (c), (d): CPU per call of each process on
              the path (/proc/<pid>/stat), its memory (VmRSS, VmHWM), its
              allocations per call (/metrics); profiles with --profile
  throughput  the strict rate ladder (250, 500, 1000, 1500, 2000, 3000, …; each
              rate tried twice; no failed call, no retransmission) of (a)–(d)
  manyregs    calls along (c) at its strict rate, before and after its callee's
              node took 10,000 registrations
  register    open-loop REGISTER rates (250, 500, 1000, 2000 /s); REGISTER 200 OK
              → a call through another node reaches the AOR
  lookup      AOR lookup latency and hops in domains of 10, 100 and 1,000 nodes
  failover    the callee domain's proxy process is killed → calls succeed again
  footprint   resident memory and goroutines, idle and with 1,000 registrations
  media       concurrent G.711 calls anchored at two nodes: loss, latency, CPU

It needs the go command (unless --hiersip), and the Debian packages sip-tester
(sipp) and kamailio; it installs nothing: rows that need a missing tool are
printed as SKIPPED. The full run takes about 25 minutes on 2 cores; --quick
about five.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			cfg.Sections = sections
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			if timeout > 0 {
				var stop context.CancelFunc
				ctx, stop = context.WithTimeout(ctx, timeout)
				defer stop()
			}
			if _, err := bench.Run(ctx, cfg, cmd.OutOrStdout()); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&cfg.Quick, "quick", false, "short run (fewer calls, runs and seconds), as the CI smoke test")
	f.StringSliceVar(&sections, "sections", nil, "subset of sections to run: "+strings.Join(bench.AllSections, ","))
	f.DurationVar(&cfg.StepDuration, "step", 0, "duration of each try of the rate ladder (default 10s; quick 3s)")
	f.IntSliceVar(&cfg.Rates, "rates", nil, "call rates of the ladder, each tried twice (default 250,500,1000,1500,2000,3000,4000,5000,6000,8000)")
	f.IntVar(&cfg.CPURate, "cpu-rate", 0, "call rate of the cpu section (default 1000; quick 100)")
	f.DurationVar(&cfg.CPUDuration, "cpu-duration", 0, "duration of each cpu step, and of the idle baseline before any load (default 40s; quick 5s)")
	f.IntVar(&cfg.ManyRegs, "registrations", 0, "registrations held by the callee's node in the manyregs section (default 10000)")
	f.IntSliceVar(&cfg.RegRates, "register-rates", nil, "offered REGISTER rates of the register section (default 250,500,1000,2000)")
	f.StringVar(&cfg.HiersipPath, "hiersip", "", "hiersip binary to run the nodes with (default: go build ./cmd/hiersip of the working directory's module)")
	f.StringVar(&cfg.OutDir, "out", "bench-results", "directory for bench.json, sipp and Kamailio files and profiles")
	f.BoolVar(&cfg.Profile, "profile", false, "fetch CPU and allocation profiles of the hiersip nodes during the cpu section into --out, summarised with go tool pprof")
	f.BoolVarP(&verbose, "verbose", "v", false, "log progress to stderr")
	f.DurationVar(&timeout, "timeout", 90*time.Minute, "abort the run after this long")
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	return cmd
}
