package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/node/daemon"
	"github.com/spf13/cobra"
)

// nodeFlags find a running node for the client commands: --admin, else
// admin.url in --data-dir, else the data_dir and admin.listen of the
// configuration (--config, HIERSIP_CONFIG, the default file, HIERSIP_*
// variables) — the node's own configuration finds the node.
type nodeFlags struct {
	config, dataDir, admin string
	timeout                time.Duration
	cmd                    *cobra.Command
}

func (f *nodeFlags) add(cmd *cobra.Command) {
	f.addConfig(cmd)
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "the node's data directory, where it writes admin.url and admin.token (default: data_dir of the configuration)")
	cmd.Flags().StringVar(&f.admin, "admin", "", "admin endpoint URL of the node, e.g. http://127.0.0.1:8080 (default: admin.url of the data directory)")
}

// addConfig adds --config only, for commands that read the configuration
// but do not talk to the node.
func (f *nodeFlags) addConfig(cmd *cobra.Command) {
	f.cmd = cmd
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "the node's configuration file, to find its data directory and admin address (default $HIERSIP_CONFIG, else "+defaultConfigFile+" if it exists)")
}

// nodeRef is a node found by nodeFlags.
type nodeRef struct {
	admin   string // base URL, "" when unknown
	dataDir string
	from    string // how the admin URL was found, for messages
	cfg     daemon.Config
}

// errNoNode: no node runs where the client looked.
var errNoNode = errors.New("no node running")

// loadConfig reads the node's configuration as hiersip node would (without
// flags). A default file that cannot be read is skipped.
func (f *nodeFlags) loadConfig() (daemon.Config, error) {
	given := f.cmd != nil && f.cmd.Flags().Changed("config")
	path := resolveConfigPath(f.config, given)
	cfg, err := daemon.Load(path, nil)
	if err != nil && path == defaultConfigFile && !given && os.Getenv(daemon.EnvPrefix+"CONFIG") == "" {
		cfg, err = daemon.Load("", nil)
	}
	return cfg, err
}

// locate finds the node; admin stays "" when neither --admin, admin.url
// nor a fixed admin.listen names it.
func (f *nodeFlags) locate() (*nodeRef, error) {
	cfg, err := f.loadConfig()
	if err != nil {
		return nil, err
	}
	r := &nodeRef{dataDir: cfg.DataDir, cfg: cfg}
	if f.dataDir != "" {
		r.dataDir = f.dataDir
	}
	switch {
	case f.admin != "":
		r.admin, r.from = f.admin, "--admin"
	case r.dataDir != "":
		// A running node writes admin.url; without it, none runs here.
		b, err := os.ReadFile(filepath.Join(r.dataDir, daemon.AdminURLFile))
		if err == nil {
			r.admin, r.from = strings.TrimSpace(string(b)), daemon.AdminURLFile+" in "+r.dataDir
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	default:
		if a := cfg.Admin.Listen; a != "" && !strings.HasSuffix(a, ":0") {
			r.admin, r.from = dialable(a), "admin.listen of the configuration"
		}
	}
	if r.admin != "" && !strings.Contains(r.admin, "://") {
		r.admin = "http://" + r.admin
	}
	r.admin = strings.TrimRight(r.admin, "/")
	return r, nil
}

// noAdmin is the error when no admin address was found.
func (r *nodeRef) noAdmin() error {
	if r.dataDir == "" {
		return fmt.Errorf("%w: no data directory and no admin.listen with a fixed port in the configuration; name the node with --data-dir, --config or --admin", errNoNode)
	}
	return fmt.Errorf("%w with data directory %s (no %s there); start one with hiersip node, or name it with --data-dir, --config or --admin",
		errNoNode, r.dataDir, daemon.AdminURLFile)
}

// token reads the admin token of the node's data directory.
func (r *nodeRef) token() (string, error) {
	if r.dataDir == "" {
		return "", errors.New("no data directory: the admin token is in the node's data directory (--data-dir)")
	}
	b, err := os.ReadFile(filepath.Join(r.dataDir, daemon.AdminTokenFile))
	if err != nil {
		return "", fmt.Errorf("admin token: %w (POST endpoints need the token of the node's data directory)", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// do sends a request to the node's admin endpoint; a node that does not
// answer is reported as such.
func (r *nodeRef) do(ctx context.Context, method, path, token string) (*http.Response, []byte, error) {
	if r.admin == "" {
		return nil, nil, r.noAdmin()
	}
	req, err := http.NewRequestWithContext(ctx, method, r.admin+path, nil)
	if err != nil {
		return nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			hint := ""
			if strings.HasPrefix(r.from, daemon.AdminURLFile) {
				hint = "; a node stopped without a clean exit leaves a stale " + daemon.AdminURLFile
			}
			return nil, nil, fmt.Errorf("%w at %s: connection refused (address from %s%s)", errNoNode, r.admin, r.from, hint)
		}
		return nil, nil, fmt.Errorf("node at %s (from %s): %w", r.admin, r.from, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	return res, body, err
}

// status reads the node's /status.
func (r *nodeRef) status(ctx context.Context) (node.Status, []byte, error) {
	var s node.Status
	res, body, err := r.do(ctx, http.MethodGet, "/status", "")
	if err != nil {
		return s, nil, err
	}
	if res.StatusCode != http.StatusOK {
		return s, nil, fmt.Errorf("%s/status: %s", r.admin, res.Status)
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, nil, fmt.Errorf("%s/status: %w", r.admin, err)
	}
	return s, body, nil
}

// sipAddr is the UDP address of the node's SIP bridge: from the running
// node's status, else sip.udp of the configuration when its port is fixed.
func (r *nodeRef) sipAddr(ctx context.Context) (string, error) {
	if r.admin != "" {
		s, _, err := r.status(ctx)
		if err != nil {
			return "", err
		}
		if s.SIP == nil || s.SIP.UDP == "" {
			return "", fmt.Errorf("the node at %s has no SIP UDP listener (sip.udp)", r.admin)
		}
		return dialable(s.SIP.UDP), nil
	}
	if a := r.cfg.SIP.UDP; a != "" && !strings.HasSuffix(a, ":0") {
		return dialable(a), nil
	}
	return "", r.noAdmin()
}

// dialable turns a listen address into one to send to: a wildcard host is
// this machine's loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if ip != nil && ip.To4() == nil {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
