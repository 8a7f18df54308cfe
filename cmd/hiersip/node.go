package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/hiersip/hiersip/node/daemon"
	"github.com/spf13/cobra"
)

func newNodeCmd() *cobra.Command {
	var (
		configPath string
		check      bool
	)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a hiersip node (the daemon)",
		Long: `Run a hiersip node until SIGINT or SIGTERM, then leave gracefully (hand the
proxy role over, save the peer cache) within shutdown_timeout; a second signal
exits at once with status 1. SIGHUP reloads what can change while the node
runs: the users of sip.users_file and log.level (other changed settings are
logged as needing a restart); it never stops the node.

Settings come from, in increasing precedence: defaults, the YAML file of
--config (else $HIERSIP_CONFIG, else ` + defaultConfigFile + ` if it exists; see
hiersip.example.yaml), HIERSIP_* environment variables (the key upper-cased,
"." as "_": HIERSIP_SIP_UDP, HIERSIP_BOOTSTRAP_PEERS=a,b), and the flags below
(sip.udp is --sip-udp). --check validates them, prints the effective settings
and exits.

The data directory belongs to one node at a time: a second node on it is
refused, naming the process that holds it (hiersip.lock). The admin endpoint
(admin.listen, loopback by default) serves /status, /metrics, /bootstrap and,
with --admin-pprof, /debug/pprof/; its URL is logged and written to admin.url
in the data directory, and the token that POST endpoints require to
admin.token there.`,
		Example: `  hiersip node --domain example
  hiersip node --config /etc/hiersip/hiersip.yaml --log-level debug
  hiersip node --config hiersip.yaml --check
  HIERSIP_DOMAIN=pastry hiersip node --bootstrap-mdns=false --bootstrap-peers /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// SIGHUP reloads; caught from the start, it never kills the node.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			path := resolveConfigPath(configPath, cmd.Flags().Changed("config"))
			cfg, err := daemon.Load(path, cmd.Flags())
			if err != nil {
				return err
			}
			if check {
				return checkConfig(cmd, cfg, path)
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			// The process's default logger too, for libraries that log to it.
			log, level, err := cfg.NewLoggerLevel(os.Stderr)
			if err != nil {
				return err
			}
			slog.SetDefault(log)
			cfg.Logger, cfg.LogLevel = log, level
			if path != "" {
				log.Info("configuration file " + path)
			}
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
			reload := make(chan struct{}, 1)
			go func() {
				for {
					select {
					case <-hup:
						select {
						case reload <- struct{}{}:
						default: // one pending reload is enough
						}
					case <-ctx.Done():
						return
					}
				}
			}()
			cfg.Reload = reload
			flags := cmd.Flags()
			cfg.ReloadConfig = func() (daemon.Config, error) { return daemon.Load(path, flags) }
			return daemon.Run(ctx, cfg)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (default $HIERSIP_CONFIG, else "+defaultConfigFile+" if it exists)")
	cmd.Flags().BoolVar(&check, "check", false, "validate the configuration, print the effective settings and exit")
	daemon.AddFlags(cmd.Flags())
	return cmd
}

// checkConfig validates cfg and prints its settings (hiersip node --check).
func checkConfig(cmd *cobra.Command, cfg daemon.Config, path string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	src := "no configuration file"
	if path != "" {
		src = "file " + path
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "# hiersip node: the configuration is valid (%s, environment, flags); effective settings:\n", src)
	return cfg.WriteSettings(out)
}
