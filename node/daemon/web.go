package daemon

import (
	"net/http"

	"github.com/hiersip/hiersip/web"
)

// adminHandler is the admin server's handler: the node's admin endpoints, and with
// admin.web the status page and browser phone of package web at /ui/ (off by default).
// The page reads /status from the same server; its phone registers over the node's
// sip.wss address, which the page takes from the wss query parameter
// (/ui/?wss=wss://host:port). What the page shows is what /status serves: turn it on only
// where /status may be read.
func (c Config) adminHandler(h http.Handler) http.Handler {
	if !c.Admin.Web {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", http.StripPrefix("/ui", web.Handler()))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	mux.Handle("/", h)
	return mux
}
