// Command hiersip-bench runs hiersip's benchmark (issue 9): call setup
// latency, throughput and CPU per call against sipp and Kamailio,
// registrations, lookup scaling, failover and footprint. See package
// github.com/hiersip/hiersip/integration/bench.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/hiersip/hiersip/integration/bench"
)

func main() {
	bench.MaybeRunHelper()
	var cfg bench.Config
	var sections string
	flag.BoolVar(&cfg.Quick, "quick", false, "short run for CI (fewer calls, runs and seconds)")
	flag.StringVar(&sections, "sections", "", "comma-separated subset of: "+strings.Join(bench.AllSections, ","))
	flag.DurationVar(&cfg.StepDuration, "step", 0, "duration of each throughput step (default 20s; quick 3s)")
	flag.StringVar(&cfg.OutDir, "out", "bench-results", "directory for bench.json, logs and profiles")
	flag.BoolVar(&cfg.Profile, "profile", false, "write CPU profiles of the hiersip nodes during the throughput section")
	verbose := flag.Bool("v", false, "log progress")
	flag.Parse()
	if sections != "" {
		cfg.Sections = strings.Split(sections, ",")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if _, err := bench.Run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hiersip-bench:", err)
		os.Exit(1)
	}
}
