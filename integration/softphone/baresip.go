package softphone

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/testenv"
)

// Account is the SIP account of a baresip instance.
type Account struct {
	AOR      string // e.g. "sip:carol@bupt.pastry"
	Password string // digest password, if the node authenticates
	Node     string // the node's UA-facing UDP address, host:port
}

// Baresip is a running baresip softphone that answers calls automatically.
type Baresip struct {
	t        testing.TB
	cmd      *exec.Cmd
	out      lockedBuffer
	cons     net.Conn
	consPort int
	run      func(name string, args ...string) *exec.Cmd
}

// Options are the settings of StartBaresipWith beyond the account.
type Options struct {
	// Listen is the IP baresip's SIP and RTP use (default 127.0.0.1).
	Listen string
	// RTPPorts is baresip's RTP port range, e.g. "40000-40009" (default 40000-40999).
	RTPPorts string
	// Command makes the command that runs a program (default exec.Command). A test runs
	// baresip in a network namespace with the namespace's Command; console commands are
	// then sent from inside it too (bash's /dev/udp to the console on its loopback), and
	// fixed ports are used (the namespace is the phone's own).
	Command func(name string, args ...string) *exec.Cmd
}

// StartBaresip starts baresip with acct, listening on loopback. It stops
// baresip at the end of the test and logs its output when the test failed.
func StartBaresip(t testing.TB, acct Account) *Baresip {
	t.Helper()
	return StartBaresipWith(t, acct, Options{})
}

// StartBaresipWith starts baresip with acct and opts.
func StartBaresipWith(t testing.TB, acct Account, opts Options) *Baresip {
	t.Helper()
	bin := testenv.RequireBinary(t, "baresip")
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1"
	}
	if opts.RTPPorts == "" {
		opts.RTPPorts = "40000-40999"
	}
	var sipPort, consPort int
	if opts.Command == nil {
		sipPort, consPort = freeUDPPort(t), freeUDPPort(t)
	} else {
		sipPort, consPort = 5062, 5555
	}
	dir := t.TempDir()
	config := fmt.Sprintf(`poll_method epoll
sip_listen %s
module_path %s
module cons.so
module g711.so
module ausine.so
module aubridge.so
module_app account.so
module_app menu.so
cons_listen 127.0.0.1:%d
audio_player aubridge,nil
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
auplay_srate 48000
audio_alert aubridge,nil
rtp_ports %s
`, net.JoinHostPort(opts.Listen, strconv.Itoa(sipPort)), modulesDir(), consPort, opts.RTPPorts)
	account := fmt.Sprintf("<%s;transport=udp>;auth_pass=%s;outbound=\"sip:%s;transport=udp\";regint=60;answermode=auto\n",
		acct.AOR, acct.Password, acct.Node)
	for name, data := range map[string]string{"config": config, "accounts": account} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := &Baresip{t: t, consPort: consPort, run: opts.Command}
	if b.run == nil {
		b.cmd = exec.Command(bin, "-f", dir)
	} else {
		b.cmd = b.run(bin, "-f", dir)
	}
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
		if b.cons != nil {
			b.cons.Close()
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("baresip output:\n%s", b.Output())
		}
	})
	if b.run == nil {
		var err error
		if b.cons, err = net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", consPort)); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// Stop stops baresip (a BYE is not sent: hang up first).
func (b *Baresip) Stop() {
	_ = b.cmd.Process.Kill()
}

// Output returns what baresip printed so far.
func (b *Baresip) Output() string { return b.out.String() }

// WaitFor waits until baresip's output contains one of subs.
func (b *Baresip) WaitFor(ctx context.Context, subs ...string) error {
	for {
		out := b.Output()
		for _, s := range subs {
			if strings.Contains(out, s) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("baresip never printed %q: %w", subs, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Command sends a console command such as "/dial sip:alice@pku.can".
func (b *Baresip) Command(cmd string) error {
	if b.run != nil {
		script := fmt.Sprintf(`printf '%%s\n' "$1" > /dev/udp/127.0.0.1/%d`, b.consPort)
		if out, err := b.run("bash", "-c", script, "bash", cmd).CombinedOutput(); err != nil {
			return fmt.Errorf("softphone: console command %q: %w: %s", cmd, err, out)
		}
		return nil
	}
	_, err := b.cons.Write([]byte(cmd + "\n"))
	return err
}

func modulesDir() string {
	for _, d := range []string{"/usr/lib/baresip/modules", "/usr/lib/x86_64-linux-gnu/baresip/modules", "/usr/local/lib/baresip/modules"} {
		if _, err := os.Stat(filepath.Join(d, "account.so")); err == nil {
			return d
		}
	}
	return "/usr/lib/baresip/modules"
}

func freeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
