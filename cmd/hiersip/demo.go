package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/hiersip/hiersip/node/demo"
	"github.com/spf13/cobra"
)

func newDemoCmd() *cobra.Command {
	var (
		cfg      demo.Config
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a self-contained demonstration on loopback",
		Long: `Start --domains domains of --nodes nodes each in this process, on loopback,
register users, place a call from one domain to another and print its ladder
diagram; with --kill-proxy, kill the callee domain's proxy mid-demo to show
the failover. Exits 0 on success.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			return demo.Run(ctx, cfg, cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&cfg.Domains, "domains", 2, "number of domains")
	cmd.Flags().IntVar(&cfg.Nodes, "nodes", 3, "nodes per domain")
	cmd.Flags().BoolVar(&cfg.KillProxy, "kill-proxy", false, "kill the callee domain's proxy mid-demo")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "log level of the nodes: debug, info, warn or error")
	return cmd
}
