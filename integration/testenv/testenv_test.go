package testenv

import (
	"fmt"
	"runtime"
	"testing"
)

// fakeTB records whether Skip or Fatal was called; both stop the calling
// goroutine like the real ones.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func run(fn func(tb testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func TestMissingBinarySkipsOrFails(t *testing.T) {
	missing := func(tb testing.TB) { RequireBinary(tb, "hiersip-no-such-binary") }

	t.Setenv("CI", "")
	if f := run(missing); !f.skipped || f.failed {
		t.Errorf("developer machine: skipped=%v failed=%v, want a skip", f.skipped, f.failed)
	}
	t.Setenv("CI", "true")
	if f := run(missing); !f.failed || f.skipped {
		t.Errorf("CI: skipped=%v failed=%v, want a failure", f.skipped, f.failed)
	}
}

func TestRequireBinaryFinds(t *testing.T) {
	if p := RequireBinary(t, "sh"); p == "" {
		t.Error("sh not found")
	}
}
