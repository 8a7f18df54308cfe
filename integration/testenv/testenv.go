package testenv

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// InCI reports whether the tests run in CI (environment CI=true).
func InCI() bool { return strings.EqualFold(os.Getenv("CI"), "true") }

// Unavailable skips t, or fails it in CI, because a prerequisite is missing.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", msg)
	}
	t.Skipf("prerequisite missing: %s", msg)
}

// RequireRoot requires the test to run as root on Linux.
func RequireRoot(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		Unavailable(t, "needs Linux, have %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (euid %d)", os.Geteuid())
	}
}

// sbinDirs are searched after PATH: a non-login root shell may lack them.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// LookBinary returns the path of the executable name, searched in PATH and
// then in the sbin directories, or "" if there is none.
func LookBinary(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// RequireBinary returns the path of the executable name or skips/fails t.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p := LookBinary(name)
	if p == "" {
		Unavailable(t, "binary %q not found in PATH or %v", name, sbinDirs)
	}
	return p
}

var (
	netnsOnce sync.Once
	netnsErr  error
)

// RequireNetns requires root, iproute2's ip and the right to create a
// network namespace (checked once per process by creating and deleting one).
func RequireNetns(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	ip := RequireBinary(t, "ip")
	netnsOnce.Do(func() {
		// Named like package netns's objects ("hs" + 6 hex digits + "-"),
		// so that a sweep removes it if the process dies half-way.
		name := fmt.Sprintf("hs%06x-probe", rand.Uint32()&0xffffff)
		if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
			netnsErr = fmt.Errorf("ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
			return
		}
		if out, err := exec.Command(ip, "netns", "delete", name).CombinedOutput(); err != nil {
			netnsErr = fmt.Errorf("ip netns delete: %v: %s", err, strings.TrimSpace(string(out)))
		}
	})
	if netnsErr != nil {
		Unavailable(t, "network namespaces: %v", netnsErr)
	}
}
