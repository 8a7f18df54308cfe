package kamcfg

import (
	"os"
	"path/filepath"
)

// ModuleDir finds Kamailio's module directory, or "" when Kamailio is not
// installed.
func ModuleDir() string {
	for _, d := range []string{"/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules",
		"/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules", "/usr/lib64/kamailio/modules"} {
		if _, err := os.Stat(filepath.Join(d, "tm.so")); err == nil {
			return d
		}
	}
	return ""
}

// Modules is the configuration lines that load the modules of a registrar
// and record-routing, transaction-stateful proxy (tm, sl, rr, maxfwd,
// textops, siputils, usrloc, registrar, pv, ctl), with usrloc in memory and
// the control socket in dir.
func Modules(dir string) string {
	return `loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "pv.so"
loadmodule "ctl.so"
modparam("ctl", "binrpc", "unix:` + dir + `/kamailio_ctl")
modparam("usrloc", "db_mode", 0)
modparam("registrar", "use_path", 0)`
}
