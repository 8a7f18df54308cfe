package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hiersip/hiersip/integration/internal/kamcfg"
)

// kamailioCfg is a minimal transaction-stateful proxy with a registrar: one
// UDP worker, Record-Route on INVITEs, loose routing of in-dialog requests,
// location lookup for the rest.
const kamailioCfg = `#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=1
tcp_children=1
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:%d
mpath="%s"
%s

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (is_method("REGISTER")) {
		if (!save("location")) { sl_reply_error(); }
		exit;
	}
	if (has_totag()) {
		if (loose_route()) {
			if (!t_relay()) { sl_reply_error(); }
			exit;
		}
		if (is_method("ACK") && t_check_trans()) {
			t_relay();
			exit;
		}
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) { t_relay(); }
		exit;
	}
	if (is_method("INVITE")) { record_route(); }
	if (!lookup("location")) {
		sl_send_reply("404", "Not Found");
		exit;
	}
	if (!t_relay()) { sl_reply_error(); }
}
`

// kamailio is a running Kamailio.
type kamailio struct {
	cmd  *exec.Cmd
	addr string
	dir  string
}

// startKamailio writes the config into dir, starts Kamailio in the
// foreground on a free loopback port and waits until it answers OPTIONS.
func startKamailio(ctx context.Context, bin, dir string) (*kamailio, error) {
	mods := kamcfg.ModuleDir()
	if mods == "" {
		return nil, fmt.Errorf("bench: kamailio modules not found")
	}
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(kamailioCfg, port, mods, kamcfg.Modules(dir))), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-f", cfgPath, "-DD", "-E", "-x", "tlsf", "-m", "1024", "-M", "16",
		"-P", filepath.Join(dir, "kamailio.pid"), "-Y", dir, "-w", dir)
	dieWithParent(cmd)
	_ = os.Remove(filepath.Join(dir, "kamailio.pid"))
	logf, err := os.Create(filepath.Join(dir, "kamailio.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	logf.Close()
	k := &kamailio{cmd: cmd, addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir}
	c, err := newSIPClient()
	if err != nil {
		k.Close()
		return nil, err
	}
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := c.transact(ctx, mustUDP(k.addr), request{method: "OPTIONS", ruri: "sip:" + k.addr, callID: randHex(8), from: "<sip:probe@127.0.0.1>;tag=1", to: "<sip:" + k.addr + ">", cseq: 1}, 200*time.Millisecond)
		if err == nil {
			return k, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "kamailio.log"))
			k.Close()
			return nil, fmt.Errorf("bench: kamailio did not answer: %v\n%s", err, tailStr(string(log), 2000))
		}
	}
}

// pids returns Kamailio's main process and its children.
func (k *kamailio) pids() []int {
	return append([]int{k.cmd.Process.Pid}, childPIDs(k.cmd.Process.Pid)...)
}

func (k *kamailio) Close() {
	_ = k.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = k.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = k.cmd.Process.Kill()
		<-done
	}
}

func tailStr(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
