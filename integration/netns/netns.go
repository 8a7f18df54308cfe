package netns

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/testenv"
)

// MaxIfName is the longest Linux interface name (IFNAMSIZ - 1).
const MaxIfName = 15

// PrefixPattern matches the names of objects made by this package: "hs",
// six hex digits, "-". Use it to find leftovers of crashed runs.
var PrefixPattern = regexp.MustCompile(`^hs[0-9a-f]{6}-`)

// ErrBadName is returned for names that are empty or too long.
var ErrBadName = errors.New("netns: bad name")

// Net is one test's network: its namespaces, bridges and processes.
type Net struct {
	t      testing.TB
	prefix string
	ip     string
	logDir string

	mu    sync.Mutex
	names map[string]bool
	veths int
}

// New returns an empty test network whose objects are removed when t ends.
// It skips t (fails it in CI) without root, iproute2 or netns support.
func New(t testing.TB) *Net {
	t.Helper()
	testenv.RequireNetns(t)
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	n := &Net{
		t:      t,
		prefix: "hs" + hex.EncodeToString(r[:]) + "-",
		ip:     testenv.RequireBinary(t, "ip"),
		names:  make(map[string]bool),
	}
	dir, err := os.MkdirTemp("", "hiersip-"+n.prefix)
	if err != nil {
		t.Fatal(err)
	}
	n.logDir = dir
	// Registered first, so it runs last: after processes and namespaces.
	t.Cleanup(func() {
		if t.Failed() {
			n.dumpLogs(os.Stderr)
			t.Logf("netns: logs kept in %s (their last lines are on the test binary's standard error, before this test's report)", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	t.Cleanup(func() {
		if err := Sweep(n.prefix); err != nil {
			t.Errorf("netns: cleanup: %v", err)
		}
	})
	return n
}

// Prefix returns the prefix of every name in this network.
func (n *Net) Prefix() string { return n.prefix }

// LogDir returns the directory of process logs.
func (n *Net) LogDir() string { return n.logDir }

// dumpLogs writes the last lines of every process log to w. It writes to
// the test binary's standard error, not to the test's log: go test prints a
// failed test's log after its cleanups, so the failure messages stay at the
// end of the output instead of being buried under the process logs.
func (n *Net) dumpLogs(w io.Writer) {
	files, _ := filepath.Glob(filepath.Join(n.logDir, "*.log"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(w, "netns %s: last lines of %s:\n%s\n", n.t.Name(), f, strings.Join(lines, "\n"))
	}
}

// run runs ip with args and returns its combined output.
func (n *Net) run(args ...string) (string, error) {
	out, err := exec.Command(n.ip, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (n *Net) must(args ...string) string {
	n.t.Helper()
	out, err := n.run(args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

func checkIfName(name string) error {
	if name == "" || len(name) > MaxIfName || strings.ContainsAny(name, "/ \t\n:") {
		return fmt.Errorf("%w: interface %q: 1 to %d characters, no '/', ':' or spaces", ErrBadName, name, MaxIfName)
	}
	return nil
}

func (n *Net) newNamespace(name string) *Namespace {
	n.t.Helper()
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		n.t.Fatalf("%v: namespace %q", ErrBadName, name)
	}
	full := n.prefix + name
	n.mu.Lock()
	dup := n.names[full]
	n.names[full] = true
	n.mu.Unlock()
	if dup {
		n.t.Fatalf("%v: namespace %q exists", ErrBadName, name)
	}
	n.must("netns", "add", full)
	ns := &Namespace{n: n, Name: full}
	ns.IP("link", "set", "lo", "up")
	return ns
}

// Namespace creates the network namespace prefix+name with lo up and no
// other interface.
func (n *Net) Namespace(name string) *Namespace {
	n.t.Helper()
	return n.newNamespace(name)
}

// Bridge creates a Linux bridge (a LAN switch) in a namespace of its own,
// prefix+"br-"+name, so that it is not in the machine's root namespace.
func (n *Net) Bridge(name string) *Bridge {
	n.t.Helper()
	ns := n.newNamespace("br-" + name)
	ns.IP("link", "add", "br0", "type", "bridge")
	ns.IP("link", "set", "br0", "up")
	return &Bridge{ns: ns}
}

func (n *Net) nextVeth() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.veths++
	return "v" + strconv.Itoa(n.veths)
}

// Link joins a and b with a veth pair: interface aIf in a with address
// aCIDR, interface bIf in b with address bCIDR (an empty CIDR sets none).
// Both ends are up.
func (n *Net) Link(a *Namespace, aIf, aCIDR string, b *Namespace, bIf, bCIDR string) {
	n.t.Helper()
	for _, name := range []string{aIf, bIf} {
		if err := checkIfName(name); err != nil {
			n.t.Fatal(err)
		}
	}
	a.IP("link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	a.configure(aIf, aCIDR)
	b.configure(bIf, bCIDR)
}

// Bridge is a LAN switch; Attach plugs namespaces into it.
type Bridge struct{ ns *Namespace }

// Namespace returns the namespace that holds the bridge (device br0).
func (br *Bridge) Namespace() *Namespace { return br.ns }

// Attach plugs ns into the bridge with interface ifname, address cidr (e.g.
// "10.0.0.1/24"; empty sets none), up.
func (br *Bridge) Attach(ns *Namespace, ifname, cidr string) {
	n := br.ns.n
	n.t.Helper()
	if err := checkIfName(ifname); err != nil {
		n.t.Fatal(err)
	}
	port := n.nextVeth()
	br.ns.IP("link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns.Name)
	br.ns.IP("link", "set", port, "master", "br0")
	br.ns.IP("link", "set", port, "up")
	ns.configure(ifname, cidr)
}

// Namespace is one network namespace of a test network.
type Namespace struct {
	n    *Net
	Name string // full name, as `ip netns list` shows it
}

func (ns *Namespace) configure(ifname, cidr string) {
	ns.n.t.Helper()
	if cidr != "" {
		ns.IP("addr", "add", cidr, "dev", ifname)
	}
	ns.IP("link", "set", ifname, "up")
}

// IP runs `ip -n <ns> args…` and fails the test on error.
func (ns *Namespace) IP(args ...string) string {
	ns.n.t.Helper()
	return ns.n.must(append([]string{"-n", ns.Name}, args...)...)
}

// Exec runs name with args inside the namespace and returns its combined
// output.
func (ns *Namespace) Exec(name string, args ...string) (string, error) {
	out, err := ns.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %v: %s", ns.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// MustExec is Exec that fails the test on error.
func (ns *Namespace) MustExec(name string, args ...string) string {
	ns.n.t.Helper()
	out, err := ns.Exec(name, args...)
	if err != nil {
		ns.n.t.Fatal(err)
	}
	return out
}

// Command returns a command that runs name with args inside the namespace
// (`ip netns exec`, which execs name, so the process is name itself).
func (ns *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, ns.n.ip, append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Sysctl writes value to /proc/sys/<key> (key with slashes, e.g.
// "net/ipv4/ip_forward") inside the namespace.
func (ns *Namespace) Sysctl(key, value string) {
	ns.n.t.Helper()
	ns.MustExec("sh", "-c", fmt.Sprintf("echo %s > /proc/sys/%s", value, key))
}

// LoopbackMulticast sets the multicast flag on lo, which mDNS needs in a
// namespace that has no other interface.
func (ns *Namespace) LoopbackMulticast() {
	ns.n.t.Helper()
	ns.IP("link", "set", "lo", "multicast", "on")
}

// AddRoute adds a route to dst ("default" or a CIDR) via gateway.
func (ns *Namespace) AddRoute(dst, via string) {
	ns.n.t.Helper()
	ns.IP("route", "add", dst, "via", via)
}

// Forwarding enables IPv4 forwarding, making the namespace a router.
func (ns *Namespace) Forwarding() {
	ns.n.t.Helper()
	ns.Sysctl("net/ipv4/ip_forward", "1")
}

// IPTables runs iptables with args inside the namespace.
func (ns *Namespace) IPTables(args ...string) {
	ns.n.t.Helper()
	bin := testenv.RequireBinary(ns.n.t, "iptables")
	ns.MustExec(bin, args...)
}

// NAT makes the namespace a NAT router whose public side is interface wan:
// IPv4 forwarding, MASQUERADE out of wan, and a drop of unsolicited inbound
// connections to the router itself, without which hole punching fails
// (DESIGN §5).
func (ns *Namespace) NAT(wan string) {
	ns.n.t.Helper()
	ns.Forwarding()
	ns.IPTables("-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE")
	ns.IPTables("-A", "INPUT", "-i", wan, "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")
}

// Start runs name with args inside the namespace. Its stdout and stderr go
// to <LogDir>/<label>.log and are kept in memory for WaitFor. The process is
// stopped at cleanup, before the namespaces are deleted.
func (ns *Namespace) Start(label, name string, args ...string) *Proc {
	t := ns.n.t
	t.Helper()
	f, err := os.Create(filepath.Join(ns.n.logDir, label+".log"))
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{Label: label, LogPath: f.Name(), log: f, changed: make(chan struct{}), done: make(chan struct{})}
	p.cmd = ns.Command(context.Background(), name, args...)
	p.cmd.Stdout = (*procWriter)(p)
	p.cmd.Stderr = p.cmd.Stdout
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatalf("netns: start %s in %s: %v", name, ns.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.mu.Lock()
		p.flushLocked()
		_ = p.log.Close()
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() { _ = p.Stop() })
	return p
}

// Proc is a process started in a namespace.
type Proc struct {
	Label   string
	LogPath string

	cmd     *exec.Cmd
	log     *os.File
	done    chan struct{}
	err     error
	stopped sync.Once

	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced when a line arrives
}

type procWriter Proc

func (w *procWriter) Write(b []byte) (int, error) {
	p := (*Proc)(w)
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = p.log.Write(b)
	p.partial = append(p.partial, b...)
	for {
		i := strings.IndexByte(string(p.partial), '\n')
		if i < 0 {
			break
		}
		p.lines = append(p.lines, string(p.partial[:i]))
		p.partial = p.partial[i+1:]
	}
	close(p.changed)
	p.changed = make(chan struct{})
	return len(b), nil
}

func (p *Proc) flushLocked() {
	if len(p.partial) > 0 {
		p.lines = append(p.lines, string(p.partial))
		p.partial = nil
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// Pid returns the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Lines returns the output lines so far.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// WaitFor returns the first output line, old or new, for which match is
// true. It fails when ctx ends or the process exits without such a line.
func (p *Proc) WaitFor(ctx context.Context, match func(line string) bool) (string, error) {
	seen := 0
	for {
		p.mu.Lock()
		lines, changed := p.lines[seen:], p.changed
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			if match(l) {
				return l, nil
			}
		}
		select {
		case <-changed:
		case <-p.done:
			p.mu.Lock()
			rest := p.lines[seen:]
			p.mu.Unlock()
			for _, l := range rest {
				if match(l) {
					return l, nil
				}
			}
			return "", fmt.Errorf("netns: %s exited (%v) without the line awaited", p.Label, p.err)
		case <-ctx.Done():
			return "", fmt.Errorf("netns: %s: awaited line: %w", p.Label, ctx.Err())
		}
	}
}

// Stop sends SIGTERM, then SIGKILL after 5 s, and waits for the exit. It
// returns the exit error; a second Stop returns the same.
func (p *Proc) Stop() error {
	p.stopped.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	<-p.done
	return p.err
}

// Sweep removes every namespace whose name starts with prefix, killing the
// processes in it first, and every root-namespace interface whose name
// starts with prefix. The prefix must match PrefixPattern's form or be "hs"
// followed by at least one character, so that it cannot remove unrelated
// namespaces by accident.
func Sweep(prefix string) error {
	if len(prefix) < 3 || !strings.HasPrefix(prefix, "hs") {
		return fmt.Errorf("%w: sweep prefix %q must start with \"hs\" and be longer", ErrBadName, prefix)
	}
	ip := testenv.LookBinary("ip")
	if ip == "" {
		return errors.New("netns: ip not found")
	}
	out, err := exec.Command(ip, "netns", "list").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns list: %v: %s", err, out)
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		if pids, err := exec.Command(ip, "netns", "pids", name).Output(); err == nil {
			for _, f := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command(ip, "netns", "delete", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %v: %s", name, err, strings.TrimSpace(string(out))))
		}
	}
	links, err := exec.Command(ip, "-o", "link", "show").Output()
	if err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(links)))
		for sc.Scan() {
			// "12: name@peer: <…"
			f := strings.SplitN(sc.Text(), ": ", 3)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(f[1], "@")
			if strings.HasPrefix(name, prefix) {
				if out, err := exec.Command(ip, "link", "delete", name).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("ip link delete %s: %v: %s", name, err, strings.TrimSpace(string(out))))
				}
			}
		}
	}
	return errors.Join(errs...)
}
