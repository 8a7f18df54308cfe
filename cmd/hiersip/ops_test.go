package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/node/daemon"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// runEnv runs a hiersip command with extra environment variables and
// standard input.
func runEnv(bin string, env []string, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// buildWith builds the command with extra linker flags into dir.
func buildWith(t *testing.T, dir, ldflags string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "hiersip")
	if out, err := exec.Command(gobin, "build", "-ldflags", ldflags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestVersionAndDefaultConfig: --version prints the version stamped at
// build time (make build does) or else the build information's; hiersip node
// reads the default configuration file when it exists and no other is named.
func TestVersionAndDefaultConfig(t *testing.T) {
	bin := buildBinary(t)
	if out, err := run(bin, "--version"); err != nil || !strings.HasPrefix(out, "hiersip ") || len(strings.TrimSpace(out)) <= len("hiersip") {
		t.Fatalf("--version: %v %q", err, out)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "etc", "hiersip.yaml")
	stamped := buildWith(t, t.TempDir(), "-X main.version=v9.8.7-test -X main.defaultConfigFile="+conf)
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if out, err := run(stamped, args...); err != nil || !strings.HasPrefix(out, "hiersip v9.8.7-test") {
			t.Fatalf("%v: %v %q", args, err, out)
		}
	}
	// No default file: the flags alone.
	out, err := run(stamped, "node", "--check", "--domain", "flagdomain")
	if err != nil || !strings.Contains(out, "no configuration file") || !strings.Contains(out, `domain: "flagdomain"`) {
		t.Fatalf("node --check without a file: %v\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("domain: filedomain\nsip: {udp: 127.0.0.1:5099}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = run(stamped, "node", "--check")
	if err != nil || !strings.Contains(out, "file "+conf) || !strings.Contains(out, `domain: "filedomain"`) ||
		!strings.Contains(out, `udp: "127.0.0.1:5099"`) {
		t.Fatalf("node --check with the default file: %v\n%s", err, out)
	}
	// --config and HIERSIP_CONFIG name another file ("" none).
	out, err = runEnv(stamped, []string{"HIERSIP_CONFIG="}, "", "node", "--check", "--domain", "x")
	if err != nil || !strings.Contains(out, "no configuration file") {
		t.Fatalf("HIERSIP_CONFIG= : %v\n%s", err, out)
	}
}

// TestNodeCheck: hiersip node --check prints the effective settings and
// exits 0, or names the bad field and exits 1, without starting a node.
func TestNodeCheck(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "hiersip.yaml")
	if err := os.WriteFile(conf, []byte("domain: pastry\nsip:\n  udp: 127.0.0.1:5070\n  max_expires: 2h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runEnv(bin, []string{"HIERSIP_LOG_LEVEL=debug"}, "", "node", "-c", conf, "--check", "--sip-tcp", "")
	if err != nil {
		t.Fatalf("valid configuration: %v\n%s", err, out)
	}
	for _, want := range []string{"configuration is valid (file " + conf, `domain: "pastry"`, `udp: "127.0.0.1:5070"`,
		`tcp: ""`, `max_expires: "2h0m0s"`, `level: "debug"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The output is a configuration that checks the same.
	again := filepath.Join(dir, "again.yaml")
	if err := os.WriteFile(again, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	out2, err := run(bin, "node", "-c", again, "--check")
	if err != nil || strings.Replace(out2, again, conf, 1) != out {
		t.Errorf("the printed settings do not check the same: %v\n%s", err, out2)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", conf, "--sip-udp", "127.0.0.1:x"}, `hiersip: config: sip.udp: "127.0.0.1:x": invalid port`},
		{[]string{"--domain", "d", "--log-level", "loud"}, `hiersip: config: log.level: "loud"`},
		{[]string{}, "hiersip: config: domain: required"},
	} {
		out, err := run(bin, append([]string{"node", "--check"}, tc.args...)...)
		if exitCode(err) != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("node --check %v: exit %d, want 1 and %q:\n%s", tc.args, exitCode(err), tc.want, out)
		}
	}
}

// TestIDAndUsers: hiersip id prints the identity of a data directory without
// starting a node; hiersip users add/remove/list edit the users file of the
// node's configuration with the domain as realm, mode 0600.
func TestIDAndUsers(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	users := filepath.Join(dir, "users")
	conf := filepath.Join(dir, "hiersip.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "domain: pastry\ndata_dir: %s\nlisten_addrs: [/ip4/0.0.0.0/tcp/4001]\nsip: {users_file: %s}\n", data, users), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(bin, "id", "-c", conf); exitCode(err) != 1 || !strings.Contains(out, "no identity key in "+data) {
		t.Fatalf("id without a key: %v\n%s", err, out)
	}
	out, err := run(bin, "id", "-c", conf, "--init")
	if err != nil || !strings.Contains(out, "created the identity key") {
		t.Fatalf("id --init: %v\n%s", err, out)
	}
	key, err := node.LoadIdentity(data)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peerIDOf(key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "peer ID   "+pid) || !strings.Contains(out, "/ip4/0.0.0.0/tcp/4001/p2p/"+pid) || !strings.Contains(out, "domain    pastry") {
		t.Fatalf("id: %s", out)
	}
	if out, err := runEnv(bin, []string{"HIERSIP_DATA_DIR=" + data}, "", "id", "-q"); err != nil || strings.TrimSpace(out) != pid {
		t.Fatalf("HIERSIP_DATA_DIR=… hiersip id -q: %v %q", err, out)
	}

	// users add: realm = domain, HA1 of the password from standard input.
	if out, err := runEnv(bin, nil, "s3cret\n", "users", "add", "-c", conf, "alice", "--password-stdin"); err != nil || !strings.Contains(out, "added alice (realm pastry)") {
		t.Fatalf("users add: %v\n%s", err, out)
	}
	if out, err := run(bin, "users", "add", "-c", conf, "bob", "--password", "b0b"); err != nil {
		t.Fatalf("users add --password: %v\n%s", err, out)
	}
	st, err := os.Stat(users)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("users file: %v %v, want mode 0600", st, err)
	}
	// Each line: both hashes (MD5, SHA-256) and a user key of its own.
	b, _ := os.ReadFile(users)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	keyOf := func(line, want string) string {
		t.Helper()
		f := strings.Split(line, ":")
		if len(f) != 4 || strings.Join(f[:3], ":") != want || !strings.HasPrefix(f[3], "ed25519-") {
			t.Fatalf("users line %q, want %s:ed25519-…", line, want)
		}
		return f[3]
	}
	if len(lines) != 2 {
		t.Fatalf("users file:\n%s", b)
	}
	aliceKey := keyOf(lines[0], sipbridge.UsersLine("alice", "pastry", "s3cret"))
	if keyOf(lines[1], sipbridge.UsersLine("bob", "pastry", "b0b")) == aliceKey {
		t.Fatal("alice and bob have the same user key")
	}
	if u, err := sipbridge.LoadUsers(users); err != nil || u.Len() != 2 {
		t.Fatalf("the node cannot read the file: %v", err)
	}
	// A new password replaces the line; remove drops it.
	if out, err := runEnv(bin, nil, "other\n", "users", "add", "-c", conf, "alice", "--password-stdin"); err != nil || !strings.Contains(out, "changed the password of alice") {
		t.Fatalf("users add again: %v\n%s", err, out)
	}
	if out, err := run(bin, "users", "remove", "-c", conf, "bob"); err != nil {
		t.Fatalf("users remove: %v\n%s", err, out)
	}
	// A new password keeps alice's user key: she still owns her name.
	if b, _ := os.ReadFile(users); string(b) != sipbridge.UsersLine("alice", "pastry", "other")+":"+aliceKey+"\n" {
		t.Fatalf("after the change and the removal:\n%s", b)
	}
	if out, err := run(bin, "users", "add", "-c", conf, "carol", "--password", "c", "--no-key"); err != nil {
		t.Fatalf("users add --no-key: %v\n%s", err, out)
	}
	if out, err := run(bin, "users", "list", "-c", conf); err != nil || strings.TrimSpace(out) != "alice\tpastry\tuser key\ncarol\tpastry\tno user key" {
		t.Fatalf("users list: %v %q", err, out)
	}
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"remove", "-c", conf, "nobody"}, "", "no user nobody in " + users},
		{[]string{"add", "--file", filepath.Join(dir, "u2"), "carol", "--password-stdin"}, "x\n", "realm \"\": give --realm"},
		{[]string{"add", "-c", conf, "bad:name", "--password", "x"}, "", `user "bad:name"`},
		{[]string{"add", "-c", conf, "dave"}, "", "not a terminal: give the password with --password-stdin"},
		{[]string{"add", "--domain-less"}, "", "unknown flag"},
	} {
		out, err := runEnv(bin, nil, tc.stdin, append([]string{"users"}, tc.args...)...)
		if exitCode(err) != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("users %v: exit %d, want 1 and %q:\n%s", tc.args, exitCode(err), tc.want, out)
		}
	}
}

// TestClientsFindTheNode: status, id and message find a node started with a
// configuration file from that file (-c), HIERSIP_ variables or --data-dir,
// and say plainly when no node runs where they look.
func TestClientsFindTheNode(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	conf := filepath.Join(dir, "hiersip.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `domain: test
data_dir: %s
listen_addrs: [/ip4/127.0.0.1/tcp/0]
bootstrap: {mdns: false, cache: false}
global: {mdns: false}
sip: {udp: "127.0.0.1:0", tcp: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
`, data), 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing runs yet.
	for _, args := range [][]string{{"status", "-c", conf}, {"message", "-c", conf, "--as", "sip:bob@test", "sip:alice@test", "hi"}} {
		out, err := run(bin, args...)
		if exitCode(err) != 1 || !strings.Contains(out, "hiersip: no node running with data directory "+data) {
			t.Fatalf("%v with no node: exit %d\n%s", args, exitCode(err), out)
		}
	}
	d := &daemonProc{dir: data}
	d.proc = startProc(t, bin, "node", "-c", conf)
	eventually(t, 30*time.Second, "the node writes admin.url", func() error {
		if d.exited() {
			t.Fatalf("the node exited: %v\n%s", d.err, d.stderr)
		}
		b, err := os.ReadFile(filepath.Join(data, daemon.AdminURLFile))
		d.admin = strings.TrimSpace(string(b))
		return err
	})
	d.status = d.getStatus(t)
	for name, c := range map[string]struct {
		env  []string
		args []string
	}{
		"-c":               {nil, []string{"-c", conf}},
		"HIERSIP_CONFIG":   {[]string{"HIERSIP_CONFIG=" + conf}, nil},
		"HIERSIP_DATA_DIR": {[]string{"HIERSIP_DATA_DIR=" + data}, nil},
		"--data-dir":       {nil, []string{"--data-dir", data}},
		"--admin":          {nil, []string{"--admin", d.admin}},
	} {
		out, err := runEnv(bin, c.env, "", append([]string{"status"}, c.args...)...)
		if err != nil || !strings.Contains(out, d.status.PeerID) {
			t.Errorf("status %s: %v\n%s", name, err, out)
		}
	}
	if out, err := run(bin, "id", "-c", conf); err != nil || !strings.Contains(out, "addresses of the running node") ||
		!strings.Contains(out, d.status.Addrs[0]+"/p2p/"+d.status.PeerID) {
		t.Errorf("id of a running node: %v\n%s", err, out)
	}
	// A UA command finds the node's SIP address through its status.
	alice := startProc(t, bin, "answer", "-c", conf, "--as", "sip:alice@test")
	eventually(t, 20*time.Second, "alice registers", func() error {
		if alice.exited() {
			t.Fatalf("answer exited: %v\n%s", alice.err, alice.stderr)
		}
		if !strings.Contains(alice.stdout.String(), "registered sip:alice@test at "+d.status.SIP.UDP) {
			return errors.New("not yet")
		}
		return nil
	})
	out, err := runEnv(bin, []string{"HIERSIP_CONFIG=" + conf}, "", "message", "--as", "sip:bob@test", "sip:alice@test", "found you")
	if err != nil || !strings.Contains(out, "final response: 200") {
		t.Fatalf("message without --node: %v\n%s", err, out)
	}
	// Another data directory: no node there.
	other := t.TempDir()
	out, err = run(bin, "status", "--data-dir", other)
	if exitCode(err) != 1 || !strings.Contains(out, "no node running with data directory "+other) {
		t.Fatalf("status of an empty data directory: exit %d\n%s", exitCode(err), out)
	}
	// A stale admin.url (the node was killed): no node answers there.
	if err := os.WriteFile(filepath.Join(other, daemon.AdminURLFile), []byte("http://127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run(bin, "status", "--data-dir", other)
	if exitCode(err) != 1 || !strings.Contains(out, "no node running at http://127.0.0.1:1: connection refused") {
		t.Fatalf("status with a stale admin.url: exit %d\n%s", exitCode(err), out)
	}
}

// TestSIGHUPAndDigest: a user added with hiersip users add while the node
// runs can send a MESSAGE (answering the node's digest challenge) after
// SIGHUP; the node stays up and keeps its identity.
func TestSIGHUPAndDigest(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if out, err := run(bin, "users", "add", "--file", users, "--realm", "test", "alice", "--password", "alice-pw"); err != nil {
		t.Fatalf("users add: %v\n%s", err, out)
	}
	d := startDaemonIn(t, bin, filepath.Join(dir, "data"), "test", "--sip-users-file", users)
	alice := startProc(t, bin, "answer", "--data-dir", d.dir, "--as", "sip:alice@test", "--password", "alice-pw")
	eventually(t, 20*time.Second, "alice registers", func() error {
		if alice.exited() {
			t.Fatalf("answer exited: %v\n%s", alice.err, alice.stderr)
		}
		if !strings.Contains(alice.stdout.String(), "registered sip:alice@test") {
			return errors.New("not yet")
		}
		return nil
	})
	msg := func() (string, error) {
		return run(bin, "message", "--data-dir", d.dir, "--as", "sip:bob@test", "--password", "bob-pw", "sip:alice@test", "hello after reload")
	}
	if out, err := msg(); err == nil {
		t.Fatalf("bob sent a MESSAGE before he was added:\n%s", out)
	}
	if out, err := runEnv(bin, nil, "bob-pw\n", "users", "add", "--file", users, "--realm", "test", "bob", "--password-stdin"); err != nil {
		t.Fatalf("users add bob: %v\n%s", err, out)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the node reloads", func() error {
		if d.exited() {
			t.Fatalf("SIGHUP stopped the node: %v\n%s", d.err, d.stderr)
		}
		if !strings.Contains(d.stderr.String(), `msg="reload: users file read"`) || !strings.Contains(d.stderr.String(), "users=2") {
			return errors.New("not yet")
		}
		return nil
	})
	out, err := msg()
	if err != nil || !strings.Contains(out, "final response: 200") {
		t.Fatalf("bob's MESSAGE after the reload: %v\n%s", err, out)
	}
	eventually(t, 10*time.Second, "alice gets the message", func() error {
		if !strings.Contains(alice.stdout.String(), "hello after reload") {
			return errors.New("not yet")
		}
		return nil
	})
	if s := d.getStatus(t); s.PeerID != d.status.PeerID {
		t.Fatalf("after SIGHUP the node is %s, was %s", s.PeerID, d.status.PeerID)
	}
}

// TestAdminTokenCLI: the daemon's POST endpoints refuse requests without the
// token of its data directory (mode 0600); hiersip disconnect sends it.
func TestAdminTokenCLI(t *testing.T) {
	bin := buildBinary(t)
	a := startDaemon(t, bin, "test")
	b := startDaemon(t, bin, "test", a.p2pAddr(t))
	st, err := os.Stat(filepath.Join(a.dir, daemon.AdminTokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v, want mode 0600", st, err)
	}
	url := a.admin + "/disconnect?peer=" + b.status.PeerID
	res, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST /disconnect without the token: %s, want 401", res.Status)
	}
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header.Set("Authorization", "Bearer 00")
	if res, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("POST /disconnect with a wrong token: %s, want 403", res.Status)
	}
	if res, err := http.Get(a.admin + "/status"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /status: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	if out, err := run(bin, "disconnect", "--data-dir", a.dir, b.status.PeerID); err != nil || !strings.Contains(out, "closed ") {
		t.Fatalf("hiersip disconnect: %v\n%s", err, out)
	}
	if out, err := run(bin, "disconnect", "--admin", a.admin, "--data-dir", t.TempDir(), b.status.PeerID); exitCode(err) != 1 || !strings.Contains(out, "admin token") {
		t.Fatalf("hiersip disconnect without the token: %v\n%s", err, out)
	}
}

// TestBenchNotInProductionBinary: the Kamailio/sipp benchmark driver is
// hiersip-bench's, not linked into hiersip.
func TestBenchNotInProductionBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/hiersip/hiersip/integration") {
			t.Errorf("hiersip links %s", pkg)
		}
	}
}

func peerIDOf(k interface{ GetPublic() crypto.PubKey }) (string, error) {
	id, err := peer.IDFromPublicKey(k.GetPublic())
	return id.String(), err
}
