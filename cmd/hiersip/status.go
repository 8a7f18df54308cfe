package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hiersip/hiersip/node"
	"github.com/spf13/cobra"
)

func newStatusCmd() *cobra.Command {
	var (
		admin, dataDir string
		raw            bool
		timeout        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the status of a running node",
		Long: `Show the status of a running node, read from its admin endpoint's /status:
peer ID, addresses, role, proxies and candidates, routing tables,
registrations, SIP addresses and connections.

The endpoint is --admin, else the URL in admin.url of --data-dir, else
http://127.0.0.1:8080.`,
		Example: `  hiersip status
  hiersip status --admin http://127.0.0.1:8080 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url := adminURL(admin, dataDir)
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/status", nil)
			if err != nil {
				return err
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer res.Body.Close()
			body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
			if err != nil {
				return err
			}
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("%s/status: %s", url, res.Status)
			}
			if raw {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			var s node.Status
			if err := json.Unmarshal(body, &s); err != nil {
				return fmt.Errorf("%s/status: %w", url, err)
			}
			return s.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&admin, "admin", "", "admin endpoint URL of the node, e.g. http://127.0.0.1:8080")
	cmd.Flags().StringVar(&dataDir, "data-dir", node.DefaultDataDir(), "data directory of the node, to find admin.url")
	cmd.Flags().BoolVar(&raw, "json", false, "print the raw JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "request timeout")
	return cmd
}

func adminURL(admin, dataDir string) string {
	if admin == "" && dataDir != "" {
		if b, err := os.ReadFile(filepath.Join(dataDir, node.AdminURLFile)); err == nil {
			admin = strings.TrimSpace(string(b))
		}
	}
	if admin == "" {
		admin = "http://127.0.0.1:8080"
	}
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	return strings.TrimRight(admin, "/")
}
