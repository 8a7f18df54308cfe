package main

import (
	"context"
	"fmt"
	"net/http"
	neturl "net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

var findNodeHelp = `The node is found as hiersip node configures it: --admin, else admin.url in
--data-dir, else in the data_dir of the configuration (--config, else
$HIERSIP_CONFIG, else ` + defaultConfigFile + ` if it exists, and HIERSIP_*
variables such as HIERSIP_DATA_DIR), else its admin.listen. When no node runs
there, the command says so and exits 1.`

func newStatusCmd() *cobra.Command {
	var (
		nf  nodeFlags
		raw bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the status of a running node",
		Long: `Show the status of a running node, read from its admin endpoint's /status:
peer ID, addresses, whether it is ready to call (its domain; other domains),
role, proxies and candidates, routing tables, registrations, SIP addresses,
connected peers with their path (direct, relayed or direct+relayed) and
connections.

` + findNodeHelp,
		Example: `  hiersip status
  hiersip status -c /etc/hiersip/hiersip.yaml
  hiersip status --admin http://127.0.0.1:8080 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := nf.locate()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), nf.timeout)
			defer cancel()
			s, body, err := r.status(ctx)
			if err != nil {
				return err
			}
			if raw {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			return s.WriteText(cmd.OutOrStdout())
		},
	}
	nf.add(cmd)
	cmd.Flags().BoolVar(&raw, "json", false, "print the raw JSON")
	cmd.Flags().DurationVar(&nf.timeout, "timeout", 10*time.Second, "request timeout")
	return cmd
}

func newDisconnectCmd() *cobra.Command {
	var nf nodeFlags
	cmd := &cobra.Command{
		Use:   "disconnect PEER-ID...",
		Short: "Close a running node's connections to peers",
		Long: `Close a running node's connections to the given peers, through its admin
endpoint (POST /disconnect, with the admin token of the node's data
directory). The next exchange with such a peer opens a new connection:
through a relay first when the peer is behind a NAT, then direct if hole
punching succeeds.

` + findNodeHelp,
		Example: `  hiersip disconnect 12D3KooW...
  hiersip disconnect --data-dir /var/lib/hiersip --admin http://127.0.0.1:8080 12D3KooW...`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := nf.locate()
			if err != nil {
				return err
			}
			if r.admin == "" {
				return r.noAdmin()
			}
			token, err := r.token()
			if err != nil {
				return err
			}
			for _, p := range args {
				ctx, cancel := context.WithTimeout(cmd.Context(), nf.timeout)
				res, body, err := r.do(ctx, http.MethodPost, "/disconnect?peer="+neturl.QueryEscape(p), token)
				cancel()
				if err != nil {
					return err
				}
				if res.StatusCode != http.StatusOK {
					return fmt.Errorf("%s/disconnect: %s: %s", r.admin, res.Status, strings.TrimSpace(string(body)))
				}
				if _, err := cmd.OutOrStdout().Write(body); err != nil {
					return err
				}
			}
			return nil
		},
	}
	nf.add(cmd)
	cmd.Flags().DurationVar(&nf.timeout, "timeout", 10*time.Second, "request timeout")
	return cmd
}
