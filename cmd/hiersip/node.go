package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/hiersip/hiersip/node"
	"github.com/spf13/cobra"
)

func newNodeCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a hiersip node (the daemon)",
		Long: `Run a hiersip node until SIGINT or SIGTERM, then leave gracefully (hand the
proxy role over, save the peer cache) within shutdown_timeout; a second signal
exits at once with status 1.

Settings come from, in increasing precedence: defaults, the YAML file of
--config (see hiersip.example.yaml), HIERSIP_* environment variables (the key
upper-cased, "." as "_": HIERSIP_SIP_UDP, HIERSIP_BOOTSTRAP_PEERS=a,b), and
the flags below (sip.udp is --sip-udp).

The admin endpoint (admin.listen, loopback by default) serves /status,
/metrics, /bootstrap and, with --admin-pprof, /debug/pprof/; its URL is logged
and written to admin.url in the data directory.`,
		Example: `  hiersip node --domain example
  hiersip node --config /etc/hiersip.yaml --log-level debug
  HIERSIP_DOMAIN=pastry hiersip node --bootstrap-mdns=false --bootstrap-peers /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("config") {
				configPath = os.Getenv(node.EnvPrefix + "CONFIG")
			}
			cfg, err := node.LoadDaemonConfig(configPath, cmd.Flags())
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			// The process's default logger too, for libraries that log to it.
			log, err := cfg.NewLogger(os.Stderr)
			if err != nil {
				return err
			}
			slog.SetDefault(log)
			cfg.Logger = log
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			go func() {
				select {
				case <-sigs:
				case <-ctx.Done():
					return
				}
				cancel()
				if _, ok := <-sigs; ok {
					fmt.Fprintln(os.Stderr, "hiersip: second signal, exiting at once")
					os.Exit(1)
				}
			}()
			return node.RunDaemon(ctx, cfg)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (default $HIERSIP_CONFIG)")
	node.AddDaemonFlags(cmd.Flags())
	return cmd
}
