package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hiersip/hiersip/integration/testenv"
)

// TestMakeInstall: make install honours PREFIX, SYSCONFDIR and DESTDIR,
// stamps the version, installs a systemd unit that systemd-analyze accepts
// and a default configuration that checks, and keeps a configuration that
// exists.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with make")
	}
	mk := testenv.RequireBinary(t, "make")
	analyze := testenv.RequireBinary(t, "systemd-analyze") // Debian systemd
	build, dest := t.TempDir(), t.TempDir()
	makeInstall := func(args ...string) {
		t.Helper()
		cmd := exec.Command(mk, append([]string{"-s", "-C", "../..", "install", "BUILDDIR=" + build, "VERSION=v0.0.0-install"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make install %v: %v\n%s", args, err, out)
		}
	}
	// Staged (DESTDIR) as a package build does.
	makeInstall("DESTDIR="+dest, "PREFIX=/usr")
	bin := filepath.Join(dest, "usr/bin/hiersip")
	if out, err := run(bin, "--version"); err != nil || strings.TrimSpace(out) != "hiersip v0.0.0-install" {
		t.Fatalf("installed --version: %v %q", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/hiersip.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ExecStart=/usr/bin/hiersip node --config /etc/hiersip/hiersip.yaml\n",
		"ExecReload=kill -HUP $MAINPID\n", "Restart=on-failure\n", "DynamicUser=yes\n", "StateDirectory=hiersip\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	conf := filepath.Join(dest, "etc/hiersip/hiersip.yaml")
	if out, err := run(bin, "node", "--check", "-c", conf); err != nil || !strings.Contains(out, `data_dir: "/var/lib/hiersip"`) {
		t.Fatalf("the installed configuration does not check: %v\n%s", err, out)
	}
	// A second install keeps the operator's configuration.
	if err := os.WriteFile(conf, []byte("domain: mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	makeInstall("DESTDIR="+dest, "PREFIX=/usr")
	if b, _ := os.ReadFile(conf); string(b) != "domain: mine\n" {
		t.Fatalf("make install replaced the configuration: %q", b)
	}
	// Installed in place (no DESTDIR), the unit names existing paths and
	// systemd-analyze verifies it; the binary reads its configuration by default.
	root := t.TempDir()
	makeInstall("PREFIX="+root+"/usr", "SYSCONFDIR="+root+"/etc")
	out, err := exec.Command(analyze, "verify", filepath.Join(root, "usr/lib/systemd/system/hiersip.service")).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out2, err := run(filepath.Join(root, "usr/bin/hiersip"), "node", "--check")
	if err != nil || !strings.Contains(out2, "file "+filepath.Join(root, "etc/hiersip/hiersip.yaml")) {
		t.Fatalf("the installed binary does not read its default configuration: %v\n%s", err, out2)
	}
}
