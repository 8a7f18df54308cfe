package node

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hiersip/hiersip/bootstrap"
)

// AdminOption configures NewAdminHandler; an invalid one makes it fail with
// a *ConfigError.
type AdminOption func(*adminConfig) error

type adminConfig struct {
	pprof bool
	log   *slog.Logger
	token string
}

// WithPprof serves net/http/pprof at /debug/pprof/.
func WithPprof(on bool) AdminOption { return func(c *adminConfig) error { c.pprof = on; return nil } }

// WithAdminToken makes the endpoints that change the node's state (POST
// /disconnect) require "Authorization: Bearer <token>": 401 without it, 403
// with another. Without a token those endpoints answer 403. The read-only
// endpoints stay open. The daemon creates a fresh token at each start in
// AdminTokenFile (mode 0600) in its data directory, where the hiersip
// command reads it. A token shorter than MinAdminToken bytes is refused:
// whoever reaches the listener could guess it.
func WithAdminToken(token string) AdminOption {
	return func(c *adminConfig) error {
		if token != strings.TrimSpace(token) || len(token) < MinAdminToken {
			return &ConfigError{"admin", fmt.Errorf("admin token: want at least %d bytes, without surrounding white space", MinAdminToken)}
		}
		c.token = token
		return nil
	}
}

// MinAdminToken is the least length of an admin token (WithAdminToken).
const MinAdminToken = 16

// authorized wraps a handler of an endpoint that changes state.
func (c *adminConfig) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c.token == "" {
			http.Error(w, "forbidden: this endpoint changes the node's state and needs an admin token, and none is configured", http.StatusForbidden)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hiersip admin"`)
			http.Error(w, "unauthorized: this endpoint needs the admin token (admin.token in the node's data directory)", http.StatusUnauthorized)
			return
		}
		if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(c.token)) != 1 {
			http.Error(w, "forbidden: wrong admin token", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// WithAdminLogger sets the logger of the handler's errors (default: the node's).
func WithAdminLogger(l *slog.Logger) AdminOption {
	return func(c *adminConfig) error {
		if l == nil {
			return &ConfigError{"admin", errors.New("nil logger")}
		}
		c.log = l
		return nil
	}
}

// NewAdminHandler returns the admin endpoint of n, for the daemon or for an
// application to mount (it is meant for loopback or a trusted network):
//
//	/status        the node's Status as JSON
//	/metrics       the node's Prometheus metrics (Node.Metrics)
//	/bootstrap     the web-station peer list of the node's domain (draft §4.1)
//	POST /disconnect?peer=<id>  closes the node's connections to a peer (WithAdminToken)
//	/debug/pprof/  profiles, only WithPprof(true)
//
// An invalid option is a *ConfigError.
func NewAdminHandler(n *Node, opts ...AdminOption) (http.Handler, error) {
	c := adminConfig{log: n.log}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(n.Status()); err != nil {
			c.log.Debug("admin: write status", "err", err)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.Metrics().Registry(), promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("POST /disconnect", c.authorized(func(w http.ResponseWriter, r *http.Request) {
		p, err := peer.Decode(r.URL.Query().Get("peer"))
		if err != nil {
			http.Error(w, "peer: "+err.Error(), http.StatusBadRequest)
			return
		}
		c, err := n.disconnect(p)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "closed %d connections to %s\n", c, p)
	}))
	mux.Handle("GET /bootstrap", bootstrap.WebStationHandler(n.Domain(), n.domain.Peers))
	if c.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hiersip node %s in domain %s\n\n/status\n/metrics\n/bootstrap\nPOST /disconnect?peer=<id>\n", n.ID(), n.Domain())
		if c.pprof {
			fmt.Fprintln(w, "/debug/pprof/")
		}
	})
	return mux, nil
}
