package sipworld

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hiersip/hiersip/integration/internal/kamcfg"
)

// kamailioCfg is a registrar and record-routing, transaction-stateful proxy
// for one domain, on UDP and TCP at one loopback address. OPTIONS to the
// server itself get 200 (a liveness probe).
const kamailioCfg = `#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
tcp_children=1
auto_aliases=no
alias="%[1]s"
listen=udp:%[2]s
listen=tcp:%[2]s
%[5]s
mpath="%[3]s"
%[4]s
%[6]s

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (is_method("OPTIONS") && uri==myself && $rU==$null) {
		sl_send_reply("200", "OK");
		exit;
	}
	if (proto == WS || proto == WSS) {
		# RFC 7118: a browser's Contact names a .invalid host; requests
		# go back over its WebSocket connection.
		force_rport();
		if (is_method("REGISTER")) {
			fix_nated_register();
		} else if (!add_contact_alias()) {
			sl_send_reply("400", "Bad Contact");
			exit;
		}
	}
	if (is_method("REGISTER")) {
		if (!save("location")) { sl_reply_error(); }
		exit;
	}
	if (has_totag()) {
		handle_ruri_alias();
		if (loose_route()) {
			if (!t_relay()) { sl_reply_error(); }
			exit;
		}
		if (is_method("ACK") && t_check_trans()) {
			t_relay();
			exit;
		}
		sl_send_reply("404", "Not Here");
		exit;
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) { t_relay(); }
		exit;
	}
	if (is_method("INVITE|SUBSCRIBE")) { record_route(); }
%[7]s
	if (!lookup("location")) {
		sl_send_reply("404", "Not Found");
		exit;
	}
	if (!t_relay()) { sl_reply_error(); }
}

onreply_route {
	if ((proto == WS || proto == WSS) && status =~ "[12][0-9][0-9]") {
		add_contact_alias();
	}
}
`

// wsListen and wsModules are added to kamailioCfg for WebSocket: WS on a
// TCP port and WSS on a TLS port (RFC 7118), with the handshake done in
// xhttp's event route. Without them the placeholders hold nathelper alone.
const wsListen = `listen=tcp:%[1]s
listen=tls:%[2]s
tcp_accept_no_cl=yes
enable_tls=yes`

const wsModules = `loadmodule "nathelper.so"
loadmodule "tls.so"
loadmodule "xhttp.so"
loadmodule "websocket.so"
modparam("tls", "config", "%[1]s")
modparam("nathelper", "received_avp", "$avp(RECEIVED)")
modparam("registrar", "received_avp", "$avp(RECEIVED)")

event_route[xhttp:request] {
	set_reply_close();
	set_reply_no_connect();
	if ($hdr(Upgrade) =~ "websocket" && $hdr(Connection) =~ "Upgrade" && $rm =~ "GET") {
		if (ws_handle_handshake()) { exit; }
	}
	xhttp_reply("404", "Not Found", "", "");
}`

const noWSModules = `loadmodule "nathelper.so"
modparam("nathelper", "received_avp", "$avp(RECEIVED)")
modparam("registrar", "received_avp", "$avp(RECEIVED)")`

const tlsCfg = `[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = %[1]s
private_key = %[2]s
`

// Kamailio is one running Kamailio of the domain.
type Kamailio struct {
	// Name is its host name in the domain's DNS, e.g. sip1.example.test.
	Name string
	// Addr is its UDP and TCP address, host:port.
	Addr string
	// CertFile is the certificate WSS serves (self-signed), for a client's
	// CA file.
	CertFile string
	// WSAddr and WSSAddr are its WebSocket addresses (ws:// and wss://,
	// any path), when the world was started with WebSocket.
	WSAddr, WSSAddr string

	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// wsConfig is what a Kamailio needs to serve WS and WSS.
type wsConfig struct {
	wsAddr, wssAddr   string
	certFile, keyFile string
}

// startKamailio starts Kamailio for domain at addr with its files in dir;
// with ws, also on WebSocket.
func startKamailio(bin, mods, domain, name, addr, dir string, ws *wsConfig, routes map[string]string) (*Kamailio, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	listen, modules := "", noWSModules
	if ws != nil {
		tlsPath := filepath.Join(dir, "tls.cfg")
		if err := os.WriteFile(tlsPath, []byte(fmt.Sprintf(tlsCfg, ws.certFile, ws.keyFile)), 0o600); err != nil {
			return nil, err
		}
		listen = fmt.Sprintf(wsListen, ws.wsAddr, ws.wssAddr)
		modules = fmt.Sprintf(wsModules, tlsPath)
	}
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(kamailioCfg, domain, addr, mods, kamcfg.Modules(dir), listen, modules, routeBlock(routes))), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "kamailio.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-f", cfgPath, "-DD", "-E", "-m", "64", "-M", "8",
		"-P", filepath.Join(dir, "kamailio.pid"), "-Y", dir, "-w", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so Stop reaches its children; killed with
	// the test process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sipworld: start kamailio: %w", err)
	}
	k := &Kamailio{Name: name, Addr: addr, cmd: cmd, dir: dir, done: make(chan struct{})}
	if ws != nil {
		k.WSAddr, k.WSSAddr, k.CertFile = ws.wsAddr, ws.wssAddr, ws.certFile
	}
	go func() { _ = cmd.Wait(); close(k.done) }()
	return k, nil
}

// Log returns what Kamailio logged so far (its last 8 KiB).
func (k *Kamailio) Log() string {
	b, _ := os.ReadFile(filepath.Join(k.dir, "kamailio.log"))
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// Running reports whether the process still runs.
func (k *Kamailio) Running() bool {
	select {
	case <-k.done:
		return false
	default:
		return true
	}
}

// Stop ends Kamailio and its children (SIGTERM to its process group, SIGKILL
// after 5 s). A second Stop returns an error.
func (k *Kamailio) Stop() error {
	if !k.Running() {
		return errors.New("sipworld: kamailio already stopped")
	}
	pgid := k.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-k.done
	}
	// Children that outlived the main process.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return nil
}

func (k *Kamailio) String() string { return k.Name + " " + k.Addr }

// routeBlock is the request_route part that sends requests for other domains to a fixed
// server, as an operator's static route (or its DNS) would: Options.Routes.
func routeBlock(routes map[string]string) string {
	doms := make([]string, 0, len(routes))
	for d := range routes {
		doms = append(doms, d)
	}
	sort.Strings(doms)
	var b strings.Builder
	for _, d := range doms {
		fmt.Fprintf(&b, "\tif ($rd == \"%s\") {\n\t\tremove_hf(\"Route\"); # the phone's preloaded Route to this server\n\t\t$du = \"sip:%s\";\n\t\tif (!t_relay()) { sl_reply_error(); }\n\t\texit;\n\t}\n", d, routes[d])
	}
	return b.String()
}
