package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hiersip/hiersip/node"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// AdminURLFile is the file in the data directory where Run writes the URL of
// its admin server while it runs.
const AdminURLFile = "admin.url"

// AdminTokenFile is the file in the data directory where Run writes the
// token of the admin endpoints that change state (mode 0600, a new one at
// each start; see node.WithAdminToken).
const AdminTokenFile = "admin.token"

// Run runs a node as c configures it, with its admin server, until ctx is
// done; then it shuts the node down gracefully (Close: proxy handoff, peer
// cache saved) within c.ShutdownTimeout. It logs "admin listening on
// http://…" and writes that URL to AdminURLFile and a fresh token of the
// admin endpoints that change state to AdminTokenFile (mode 0600) in the
// data directory while it runs. It returns nil after a clean shutdown.
func Run(ctx context.Context, c Config) error {
	if c.Logger == nil {
		var err error
		if c.Logger, c.LogLevel, err = c.NewLoggerLevel(os.Stderr); err != nil {
			return err
		}
	}
	cfg, err := c.NodeConfig()
	if err != nil {
		return err
	}
	log := cfg.Logger
	if c.DataDir != "" {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return &node.ConfigError{Field: "data_dir", Err: err}
		}
	}
	cfg.Metrics = node.NewMetrics() // with the process's collectors: one node per process
	cfg.Metrics.Registry().MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n, err := node.New(ctx, cfg)
	if err != nil {
		return err
	}
	var (
		srv     *http.Server
		srvDone = make(chan struct{})
		files   []string // admin.url and admin.token, removed at exit
	)
	if c.Admin.Listen != "" {
		ln, err := net.Listen("tcp", c.Admin.Listen)
		if err != nil {
			return errors.Join(&node.ConfigError{Field: "admin.listen", Err: err}, n.Close())
		}
		var tok [32]byte
		_, _ = rand.Read(tok[:])
		token := hex.EncodeToString(tok[:])
		admin, err := node.NewAdminHandler(n, node.WithPprof(c.Admin.Pprof), node.WithAdminToken(token))
		if err != nil {
			return errors.Join(err, ln.Close(), n.Close())
		}
		if c.DataDir != "" {
			f := filepath.Join(c.DataDir, AdminTokenFile)
			if err := writePrivate(f, token+"\n"); err != nil {
				return errors.Join(fmt.Errorf("daemon: admin token: %w", err), ln.Close(), n.Close())
			}
			files = append(files, f)
		} else {
			log.Warn("no data_dir: the admin token is not written anywhere, POST endpoints cannot be used")
		}
		if host, _, _ := net.SplitHostPort(ln.Addr().String()); !isLoopback(host) {
			log.Warn("admin endpoint beyond loopback: /status, /metrics and /bootstrap are readable by anyone who reaches it (POST endpoints need the token)", "addr", ln.Addr().String())
		}
		srv = &http.Server{
			Handler:           c.adminHandler(admin), // web.go
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		go func() {
			defer close(srvDone)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server", "err", err)
			}
		}()
		url := "http://" + ln.Addr().String()
		log.Info("admin listening on " + url)
		if c.DataDir != "" {
			urlFile := filepath.Join(c.DataDir, AdminURLFile)
			if err := writePrivate(urlFile, url+"\n"); err != nil {
				log.Warn("cannot write the admin URL", "file", urlFile, "err", err)
			} else {
				files = append(files, urlFile)
			}
		}
	} else {
		close(srvDone)
	}
	attrs := []any{"peer", n.ID(), "domain", n.Domain(), "addrs", n.Host().Addrs()}
	if b := n.Bridge(); b != nil {
		attrs = append(attrs, "sip_udp", b.UDPAddr(), "sip_tcp", b.TCPAddr())
	}
	log.Info("node started", attrs...)

	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-c.Reload:
			c.reload(cfg.SIP)
		}
	}
	log.Info("shutting down", "timeout", c.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var errs []error
		if srv != nil {
			errs = append(errs, srv.Shutdown(sctx))
		}
		<-srvDone
		for _, f := range files {
			_ = os.Remove(f)
		}
		errs = append(errs, n.Close())
		done <- errors.Join(errs...)
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("daemon: shutdown: %w", err)
		}
		log.Info("stopped")
		return nil
	case <-sctx.Done():
		return fmt.Errorf("daemon: shutdown took longer than %v", c.ShutdownTimeout)
	}
}

// writePrivate writes a file only its owner can read, replacing it whole.
func writePrivate(path, content string) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp) // a leftover might have another mode
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// reload applies what can change while the node runs (see Config.Reload)
// and logs what cannot. sip is the node's SIP configuration (nil: no SIP).
func (c Config) reload(sip *node.SIPConfig) {
	log := c.Logger
	log.Info("reloading")
	next := c
	if c.ReloadConfig != nil {
		var err error
		if next, err = c.ReloadConfig(); err != nil {
			log.Error("reload: configuration refused, nothing changed", "err", err)
			return
		}
		next.Logger = c.Logger // validate without building a logger
	}
	// One read of the users file, to check it and to use it.
	nc, err := next.NodeConfig()
	if err != nil {
		log.Error("reload: configuration refused, nothing changed", "err", err)
		return
	}
	if c.ReloadConfig != nil {
		if c.LogLevel != nil {
			level, _ := next.level()
			if level != c.LogLevel.Level() {
				c.LogLevel.Set(level)
				log.Info("reload: log level set", "level", level)
			}
		}
		if changed := changedSettings(c, next, "log.level"); len(changed) > 0 {
			log.Warn("reload: changed settings need a restart", "settings", changed)
		}
	}
	if sip == nil || sip.Users == nil || next.SIP.UsersFile != c.SIP.UsersFile || nc.SIP == nil || nc.SIP.Users == nil {
		return // no users file, or a changed path (logged above)
	}
	sip.Users.Replace(nc.SIP.Users)
	log.Info("reload: users file read", "file", c.SIP.UsersFile, "users", sip.Users.Len())
}
