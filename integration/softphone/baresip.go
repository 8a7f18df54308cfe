package softphone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	t    testing.TB
	cmd  *exec.Cmd
	out  lockedBuffer
	cons net.Conn
	stop func() // kills baresip and waits for it
}

// Options place a baresip instance elsewhere than on the test's loopback.
type Options struct {
	// Listen is baresip's sip_listen (default 127.0.0.1 and a free port).
	Listen string
	// RegInt is the registration interval in seconds (default 60).
	RegInt int
	// Transport is the SIP transport to the node, "udp" (default) or "tcp".
	Transport string
	// Manual makes baresip ring until the test sends "/accept" (default: it answers at
	// once).
	Manual bool
	// AccountParams are further parameters of the account line, e.g. ";pubint=600" (with
	// the presence module, baresip then PUBLISHes its status).
	AccountParams string
	// RTPPorts is baresip's RTP port range, e.g. "40000-40009" (default
	// 40000-40999); a test that counts RTP pins it.
	RTPPorts string
	// Config are further lines of baresip's config file.
	Config []string
	// Contacts are the lines of baresip's contacts file, e.g.
	// `"Bob" <sip:bob@pastry>;presence=p2p` (with the presence module, it watches
	// bob's presence).
	Contacts []string
	// Command makes the command that runs baresip, e.g. inside a network
	// namespace (default exec.Command).
	Command func(name string, args ...string) *exec.Cmd
	// Dial opens the connection to baresip's console, which listens on its
	// loopback (default net.Dial).
	Dial func(network, addr string) (net.Conn, error)
}

// StartBaresip starts baresip with acct, listening on loopback. It stops
// baresip at the end of the test and logs its output when the test failed.
func StartBaresip(t testing.TB, acct Account) *Baresip {
	t.Helper()
	return Start(t, acct, Options{})
}

// Start starts baresip with acct as o says (see StartBaresip). It returns once
// baresip is ready; when a port it was given was taken in the meantime (ports are
// found free and then handed over, and other tests open sockets meanwhile), it
// starts baresip again on other ports.
func Start(t testing.TB, acct Account, o Options) *Baresip {
	t.Helper()
	bin := testenv.RequireBinary(t, "baresip")
	if o.RTPPorts == "" {
		o.RTPPorts = "40000-40999"
	}
	if o.RegInt == 0 {
		o.RegInt = 60
	}
	if o.Transport == "" {
		o.Transport = "udp"
	}
	if o.Command == nil {
		o.Command = defaultCommand
	}
	if o.Dial == nil {
		o.Dial = net.Dial
	}
	const attempts = 5
	for attempt := 1; ; attempt++ {
		listen := o.Listen
		if listen == "" {
			listen = fmt.Sprintf("127.0.0.1:%d", freeSIPPort(t))
		}
		b, err := start(t, bin, acct, o, listen)
		if err == nil {
			return b
		}
		if !errors.Is(err, errPortTaken) || attempt == attempts {
			t.Fatal(err)
		}
		t.Logf("softphone: %v; starting it again on other ports", err)
	}
}

var defaultCommand = exec.Command

// errPortTaken says that baresip could not bind a port it was given.
var errPortTaken = errors.New("a port baresip was given is taken")

// start runs baresip once and waits until it is ready, or has failed.
func start(t testing.TB, bin string, acct Account, o Options, listen string) (*Baresip, error) {
	t.Helper()
	consPort := freePort(t, 1)
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
`, listen, modulesDir(), consPort, o.RTPPorts) + strings.Join(o.Config, "\n") + "\n"
	answer := "auto"
	if o.Manual {
		answer = "manual"
	}
	account := fmt.Sprintf("<%s;transport=%s>;auth_pass=%s;outbound=\"sip:%s;transport=%s\";regint=%d;answermode=%s%s\n",
		acct.AOR, o.Transport, acct.Password, acct.Node, o.Transport, o.RegInt, answer, o.AccountParams)
	contacts := strings.Join(o.Contacts, "\n") + "\n"
	for name, data := range map[string]string{"config": config, "accounts": account, "contacts": contacts} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			return nil, err
		}
	}
	b := &Baresip{t: t, cmd: o.Command(bin, "-f", dir)}
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() {
		_ = b.cmd.Wait()
		close(exited)
	}()
	b.stop = func() {
		_ = b.cmd.Process.Kill()
		<-exited
	}
	if err := b.ready(exited); err != nil {
		b.stop()
		if t.Failed() || testing.Verbose() || !errors.Is(err, errPortTaken) {
			t.Logf("baresip output:\n%s", b.Output())
		}
		return nil, err
	}
	t.Cleanup(func() {
		b.stop()
		if b.cons != nil {
			b.cons.Close()
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("baresip output:\n%s", b.Output())
		}
	})
	var err error
	if b.cons, err = o.Dial("udp", fmt.Sprintf("127.0.0.1:%d", consPort)); err != nil {
		return nil, err
	}
	return b, nil
}

// ready waits until baresip says it is ready, with every port it was given bound.
func (b *Baresip) ready(exited <-chan struct{}) error {
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		out := b.Output()
		switch {
		case strings.Contains(out, "Address already in use"):
			return errPortTaken
		case strings.Contains(out, "baresip is ready."):
			return nil
		}
		select {
		case <-exited:
			if strings.Contains(b.Output(), "Address already in use") {
				return errPortTaken
			}
			return errors.New("baresip exited before it was ready")
		case <-deadline.C:
			return errors.New("baresip was not ready within 30 s")
		case <-tick.C:
		}
	}
}

// Stop stops baresip (a BYE is not sent: hang up first).
func (b *Baresip) Stop() {
	b.stop()
}

// Output returns what baresip printed so far.
func (b *Baresip) Output() string { return b.out.String() }

// WaitFor waits until baresip's output contains one of subs.
func (b *Baresip) WaitFor(ctx context.Context, subs ...string) error {
	return waitOutput(ctx, b.Output, "baresip", subs)
}

// waitOutput waits until output() contains one of subs.
func waitOutput(ctx context.Context, output func() string, name string, subs []string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		out := output()
		for _, s := range subs {
			if strings.Contains(out, s) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never printed %q: %w", name, subs, ctx.Err())
		case <-tick.C:
		}
	}
}

// Command sends a console command such as "/dial sip:alice@pku.can".
func (b *Baresip) Command(cmd string) error {
	_, err := b.cons.Write([]byte(cmd + "\n"))
	return err
}

// Dial calls target ("/dial target") and returns once baresip says it is connecting. A
// console command is one UDP datagram: it sends the command again when baresip has not
// said so within 3 s (it says so at once), until ctx ends.
func (b *Baresip) Dial(ctx context.Context, target string) error {
	return b.until(ctx, "/dial "+target, func() int { return strings.Count(b.Output(), "connecting to '") })
}

// until sends cmd, again every 3 s, until count() grows or ctx ends.
func (b *Baresip) until(ctx context.Context, cmd string, count func() int) error {
	before := count()
	grown := func() string {
		if count() > before {
			return "done"
		}
		return ""
	}
	for {
		if err := b.Command(cmd); err != nil {
			return err
		}
		wait, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := waitOutput(wait, grown, "baresip", []string{"done"})
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("baresip: %q had no effect: %w", cmd, ctx.Err())
		}
	}
}

// Hangup hangs up baresip's call and returns once baresip says the call ended ("call:
// terminate call", "Call terminated" or "session closed"). A console command is one UDP datagram, and one that
// is lost leaves the call up: it sends "/hangup" again every 3 s until then, or until
// ctx ends.
func (b *Baresip) Hangup(ctx context.Context) error {
	return b.until(ctx, "/hangup", func() int {
		out := b.Output()
		return strings.Count(out, "terminate") + strings.Count(out, "session closed")
	})
}

// Query sends a console command such as "/contacts" and returns what the console
// answered: what it sent until it was quiet for 200 ms (at most 2 s).
func (b *Baresip) Query(cmd string) (string, error) {
	buf := make([]byte, 64<<10)
	for { // what earlier commands answered
		_ = b.cons.SetReadDeadline(time.Now())
		if _, err := b.cons.Read(buf); err != nil {
			break
		}
	}
	defer func() { _ = b.cons.SetReadDeadline(time.Time{}) }()
	if err := b.Command(cmd); err != nil {
		return "", err
	}
	var out strings.Builder
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		_ = b.cons.SetReadDeadline(time.Now().Add(min(time.Until(end), 200*time.Millisecond)))
		n, err := b.cons.Read(buf)
		if err != nil {
			break
		}
		out.Write(buf[:n])
	}
	return out.String(), nil
}

func modulesDir() string {
	for _, d := range []string{"/usr/lib/baresip/modules", "/usr/lib/x86_64-linux-gnu/baresip/modules", "/usr/local/lib/baresip/modules"} {
		if _, err := os.Stat(filepath.Join(d, "account.so")); err == nil {
			return d
		}
	}
	return "/usr/lib/baresip/modules"
}

// freeSIPPort is a loopback port free for baresip's SIP transports: UDP and TCP on it, and
// TCP on the next one (its TLS transport), so that a port some other test holds over TCP
// does not keep baresip from starting its transports (and registering).
func freeSIPPort(t testing.TB) int {
	t.Helper()
	return freePort(t, 2)
}

// freePort is a loopback port free for UDP, and for TCP on it and the tcpSpan-1 ports
// after it (baresip's console listens on UDP and TCP: a console port taken over TCP left
// a test unable to send its commands, "bind: Address already in use").
func freePort(t testing.TB, tcpSpan int) int {
	t.Helper()
	for range 50 {
		p := freeUDPPort(t)
		free := true
		for q := p; q < p+tcpSpan; q++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return p
		}
	}
	t.Fatal("softphone: no loopback port free for both UDP and TCP")
	return 0
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
