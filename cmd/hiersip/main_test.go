package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hiersip/hiersip/node/daemon"

	"github.com/hiersip/hiersip/node"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinary builds the hiersip command into a temporary directory, once.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	buildOnce.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if binDir, buildErr = os.MkdirTemp("", "hiersip-test"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "hiersip")
		out, err := exec.Command(gobin, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a hiersip process running in the background.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	err            error
}

// cleanEnv is the test's environment without HIERSIP_ variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, daemon.EnvPrefix) {
			env = append(env, kv)
		}
	}
	return env
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr, p.cmd.Env = p.stdout, p.stderr, cleanEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits for the exit, at most within.
func (p *proc) stop(t *testing.T, sig os.Signal, within time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		return time.Since(start), p.err
	case <-time.After(within):
		t.Fatalf("%v: no exit within %v", p.cmd.Args, within)
		return 0, nil
	}
}

// run runs a hiersip command to its end.
func run(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// daemonProc is a running hiersip node process.
type daemonProc struct {
	*proc
	dir, admin string
	status     node.Status
}

func startDaemon(t *testing.T, bin, domain string, peers ...string) *daemonProc {
	t.Helper()
	var extra []string
	if len(peers) > 0 {
		extra = append(extra, "--bootstrap-peers", strings.Join(peers, ","))
	}
	return startDaemonIn(t, bin, t.TempDir(), domain, extra...)
}

// daemonArgs are the arguments of a test node on loopback in dir.
func daemonArgs(dir, domain string, extra ...string) []string {
	return append([]string{"node", "--domain", domain, "--data-dir", dir,
		"--listen-addrs", "/ip4/127.0.0.1/tcp/0",
		"--bootstrap-mdns=false", "--global-mdns=false", "--bootstrap-cache=false",
		"--sip-udp", "127.0.0.1:0", "--sip-tcp", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--log-level", "debug"}, extra...)
}

// startDaemonIn starts a node on loopback with data directory dir and waits
// for its admin endpoint.
func startDaemonIn(t *testing.T, bin, dir, domain string, extra ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{dir: dir}
	d.proc = startProc(t, bin, daemonArgs(dir, domain, extra...)...)
	eventually(t, 30*time.Second, "the daemon writes admin.url", func() error {
		if d.exited() {
			t.Fatalf("the daemon exited: %v\n%s", d.err, d.stderr)
		}
		b, err := os.ReadFile(filepath.Join(d.dir, daemon.AdminURLFile))
		if err != nil {
			return err
		}
		d.admin = strings.TrimSpace(string(b))
		return nil
	})
	if !strings.Contains(d.stderr.String(), "admin listening on "+d.admin) {
		t.Errorf("stderr does not name the admin URL %s", d.admin)
	}
	d.status = d.getStatus(t)
	return d
}

func (d *daemonProc) getStatus(t *testing.T) node.Status {
	t.Helper()
	out, err := run(d.bin(), "status", "--admin", d.admin, "--json")
	if err != nil {
		t.Fatalf("hiersip status --json: %v\n%s", err, out)
	}
	var s node.Status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("hiersip status --json: %v\n%s", err, out)
	}
	return s
}

func (d *daemonProc) bin() string { return d.cmd.Path }

// p2pAddr is the daemon's loopback TCP address with its peer ID.
func (d *daemonProc) p2pAddr(t *testing.T) string {
	for _, a := range d.status.Addrs {
		if strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			return a + "/p2p/" + d.status.PeerID
		}
	}
	t.Fatalf("no loopback TCP address in %v", d.status.Addrs)
	return ""
}

func (d *daemonProc) metrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(d.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return mf
}

// counter sums the series of a metric whose labels include labels ("k=v").
func counter(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var sum float64
outer:
	for _, m := range mf[name].GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if have[k] != v {
				continue outer
			}
		}
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
	}
	return sum
}

func TestDaemonProcesses(t *testing.T) {
	bin := buildBinary(t)
	a := startDaemon(t, bin, "test")
	b := startDaemon(t, bin, "test", a.p2pAddr(t))

	// Both join; hiersip status of each shows the other.
	for _, c := range []struct{ d, other *daemonProc }{{a, b}, {b, a}} {
		eventually(t, 30*time.Second, "status shows the other node", func() error {
			out, err := run(bin, "status", "--data-dir", c.d.dir)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if !strings.Contains(out, "connection  "+c.other.status.PeerID) ||
				!strings.Contains(out, "calls in test") || strings.Contains(out, "alone") || !strings.Contains(out, "domain: 1 peers in routing table") {
				return fmt.Errorf("status:\n%s", out)
			}
			return nil
		})
	}
	a.status, b.status = a.getStatus(t), b.getStatus(t)
	if a.status.SIP == nil || b.status.SIP == nil {
		t.Fatal("no SIP addresses in status")
	}
	regsBefore := counter(b.metrics(t), "hiersip_registrations_total", "op=register", "result=ok")
	// Calls look the callee's devices up (issue 19: every node serving a device).
	lookupsBefore := counter(a.metrics(t), "hiersip_lookups_total", "overlay=domain", "record=devices", "result=found")

	// alice answers at b; bob calls her from a.
	alice := startProc(t, bin, "answer", "--node", b.status.SIP.UDP, "--as", "sip:alice@test")
	eventually(t, 20*time.Second, "alice registers", func() error {
		if alice.exited() {
			t.Fatalf("answer exited: %v", alice.err)
		}
		if !strings.Contains(alice.stdout.String(), "registered sip:alice@test") {
			return errors.New("not yet")
		}
		return nil
	})
	var out string
	eventually(t, 30*time.Second, "bob calls alice", func() (err error) {
		out, err = run(bin, "call", "--node", a.status.SIP.UDP, "--as", "sip:bob@test", "--duration", "100ms", "sip:alice@test")
		if err != nil {
			return fmt.Errorf("%v:\n%s", err, out)
		}
		return nil
	})
	for _, want := range []string{"registered sip:bob@test", "final response: 200 OK", "hung up", "ladder:", "INVITE sip:alice@test", "BYE"} {
		if !strings.Contains(out, want) {
			t.Errorf("hiersip call output lacks %q:\n%s", want, out)
		}
	}
	out, err := run(bin, "message", "--node", a.status.SIP.UDP, "--as", "sip:bob@test", "sip:alice@test", "hello alice")
	if err != nil || !strings.Contains(out, "final response: 200") {
		t.Fatalf("hiersip message: %v\n%s", err, out)
	}
	eventually(t, 10*time.Second, "alice sees the call and the message", func() error {
		s := alice.stdout.String()
		for _, want := range []string{"answered call from", "ended", "message from", "hello alice"} {
			if !strings.Contains(s, want) {
				return fmt.Errorf("no %q in:\n%s", want, s)
			}
		}
		return nil
	})

	// The counters moved.
	if v := counter(b.metrics(t), "hiersip_registrations_total", "op=register", "result=ok"); v <= regsBefore {
		t.Errorf("registrations at b: %v, before %v", v, regsBefore)
	}
	if v := counter(a.metrics(t), "hiersip_lookups_total", "overlay=domain", "record=devices", "result=found"); v <= lookupsBefore {
		t.Errorf("lookups at a: %v, before %v", v, lookupsBefore)
	}
	if v := counter(a.metrics(t), "hiersip_lookup_duration_seconds", "overlay=domain"); v < 1 {
		t.Errorf("lookup latency histogram at a: %v samples", v)
	}
	if v := counter(b.metrics(t), "hiersip_bootstrap_events_total", "source=static", "event=connected"); v < 1 {
		t.Errorf("bootstrap events at b: %v", v)
	}
	for name, n := range map[string]*daemonProc{"a": a, "b": b} {
		if v := counter(n.metrics(t), "hiersip_sip_calls_routed_total", "kind=intra-domain", "code=200"); v < 1 {
			t.Errorf("calls routed at %s: %v", name, v)
		}
		if v := counter(n.metrics(t), "hiersip_sip_transactions_in_flight"); v != 0 {
			t.Errorf("transactions in flight at %s after the call: %v", name, v)
		}
	}

	// bob watches alice's presence from a: open while she is registered, closed once she
	// unregisters.
	watch := startProc(t, bin, "watch", "--node", a.status.SIP.UDP, "--as", "sip:bob@test", "sip:alice@test")
	eventually(t, 20*time.Second, "bob's watch sees alice open", func() error {
		if s := watch.stdout.String(); !strings.Contains(s, "subscribed to presence of sip:alice@test: 200") || !strings.Contains(s, ": open (") {
			return fmt.Errorf("watch output:\n%s", s)
		}
		return nil
	})

	// Interrupt alice; SIGTERM both nodes: each exits 0 within the bound.
	if _, err := alice.stop(t, os.Interrupt, 10*time.Second); err != nil {
		t.Errorf("answer after SIGINT: %v", err)
	}
	eventually(t, 20*time.Second, "bob's watch sees alice closed", func() error {
		if s := watch.stdout.String(); !strings.Contains(s, ": closed (") {
			return fmt.Errorf("watch output:\n%s", s)
		}
		return nil
	})
	if _, err := watch.stop(t, os.Interrupt, 10*time.Second); err != nil {
		t.Errorf("watch after SIGINT: %v", err)
	}
	for _, d := range []*daemonProc{b, a} {
		took, err := d.stop(t, syscall.SIGTERM, daemon.DefaultShutdownTimeout+5*time.Second)
		if err != nil {
			t.Errorf("node after SIGTERM: %v", err)
		}
		t.Logf("node %s stopped in %v", d.status.PeerID, took)
		if _, err := os.Stat(filepath.Join(d.dir, daemon.AdminURLFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("admin.url left behind: %v", err)
		}
		if !strings.Contains(d.stderr.String(), "msg=stopped") {
			t.Errorf("no clean stop in the log")
		}
	}
}

func TestNodeConfigErrorExits(t *testing.T) {
	bin := buildBinary(t)
	out, err := run(bin, "node", "--domain", "d", "--sip-udp", "127.0.0.1:x", "--data-dir", t.TempDir())
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v", err)
	}
	if want := `hiersip: config: sip.udp: "127.0.0.1:x": invalid port`; !strings.Contains(out, want) {
		t.Fatalf("output %q lacks %q", out, want)
	}
	out, err = run(bin, "version")
	if err != nil || !strings.HasPrefix(out, "hiersip ") {
		t.Fatalf("version: %v %q", err, out)
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	root := newRootCmd()
	for _, c := range append(root.Commands(), root) {
		if c.Name() == "completion" || c.Name() == "help" {
			continue
		}
		r := newRootCmd()
		var out bytes.Buffer
		r.SetOut(&out)
		r.SetErr(&out)
		args := []string{c.Name(), "--help"}
		if c == root {
			args = []string{"--help"}
		}
		r.SetArgs(args)
		if err := r.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.Contains(out.String(), "Usage:") || c.Short == "" {
			t.Fatalf("%v: %s", args, out.String())
		}
	}
}

// TestDemoCommand runs `hiersip demo`, the README's first command, as a user would:
// it must exit 0 after printing the ladder of a call across two domains.
func TestDemoCommand(t *testing.T) {
	bin := buildBinary(t)
	out, err := run(bin, "demo")
	if err != nil {
		t.Fatalf("hiersip demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		"registered sip:bob@bupt.pastry",
		"sip:bob@bupt.pastry calls sip:alice@pku.can",
		"(proxy)        INVITE sip:alice@pku.can",
		"180 Ringing",
		"-> global overlay          GET sip:overlay@can", // F5
		"call setup INVITE → 200 OK:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestAuthorityHelp(t *testing.T) {
	for _, sub := range []string{"init", "issue", "revoke"} {
		r := newRootCmd()
		var out bytes.Buffer
		r.SetOut(&out)
		r.SetErr(&out)
		r.SetArgs([]string{"authority", sub, "--help"})
		if err := r.Execute(); err != nil || !strings.Contains(out.String(), "Usage:") {
			t.Fatalf("authority %s --help: %v\n%s", sub, err, out.String())
		}
	}
}

// TestNodeBusyPortExits: `hiersip node` on a SIP port another process holds
// exits 1 with an error naming the setting and the cause, not a panic.
func TestNodeBusyPortExits(t *testing.T) {
	bin := buildBinary(t)
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	out, err := run(bin, "node", "--domain", "d", "--data-dir", t.TempDir(), "--listen-addrs", "/ip4/127.0.0.1/tcp/0",
		"--bootstrap-mdns=false", "--global-mdns=false", "--admin-listen", "",
		"--sip-udp", busy.LocalAddr().String(), "--sip-tcp", "127.0.0.1:0")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if strings.Contains(out, "panic") || !strings.Contains(out, "sip.udp") ||
		!strings.Contains(out, busy.LocalAddr().String()+": bind: address already in use") {
		t.Fatalf("output does not name sip.udp and the busy address:\n%s", out)
	}
}

// TestSecondDaemonRefused: a second `hiersip node` on the data directory of a
// running one exits 1 naming the first's process ID, and leaves the first's
// admin.url in place.
func TestSecondDaemonRefused(t *testing.T) {
	bin := buildBinary(t)
	first := startDaemon(t, bin, "test")
	out, err := run(bin, daemonArgs(first.dir, "test")...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("second daemon: %v\n%s", err, out)
	}
	want := fmt.Sprintf("is locked by process %d", first.cmd.Process.Pid)
	if !strings.Contains(out, want) || strings.Contains(out, "panic") {
		t.Fatalf("second daemon's output lacks %q:\n%s", want, out)
	}
	b, err := os.ReadFile(filepath.Join(first.dir, daemon.AdminURLFile))
	if err != nil || strings.TrimSpace(string(b)) != first.admin {
		t.Fatalf("the first daemon's admin.url: %q, %v", b, err)
	}
	if s := first.getStatus(t); s.PeerID != first.status.PeerID {
		t.Fatalf("the first daemon answers as %s", s.PeerID)
	}
	// The lock goes with the process, also after SIGKILL: a new daemon starts
	// on the directory, with the same identity.
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.done
	if err := os.Remove(filepath.Join(first.dir, daemon.AdminURLFile)); err != nil { // stale, left by the kill
		t.Fatal(err)
	}
	again := startDaemonIn(t, bin, first.dir, "test")
	if again.status.PeerID != first.status.PeerID {
		t.Fatalf("after SIGKILL the node restarted as %s, was %s", again.status.PeerID, first.status.PeerID)
	}
}
