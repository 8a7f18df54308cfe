package browser

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hiersip/hiersip/integration/testenv"
)

// Browser is a running headless Chromium with one tab.
type Browser struct {
	ctx    context.Context // the tab's
	cancel context.CancelFunc
	logs   *lockedLines
}

// Option adds a command-line switch to Chromium.
type Option = chromedp.ExecAllocatorOption

// WithFlag sets a Chromium switch, e.g. WithFlag("ignore-certificate-errors",
// true) for a test server's self-signed WSS certificate.
func WithFlag(name string, value any) Option { return chromedp.Flag(name, value) }

// Start starts Chromium and opens a tab. The browser is closed when the
// test ends.
func Start(t testing.TB, extra ...Option) *Browser {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if bin = testenv.LookBinary(name); bin != "" {
			break
		}
	}
	if bin == "" {
		testenv.Unavailable(t, "no chromium binary (Debian package chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1280, 900),
		// Two tabs of one test talk WebRTC over loopback.
		chromedp.Flag("allow-loopback-in-peer-connection", true),
	)
	opts = append(opts, extra...)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	logs := &lockedLines{}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(logs.add), chromedp.WithErrorf(logs.add))
	b := &Browser{ctx: ctx, logs: logs, cancel: func() { cancel(); acancel() }}
	// The first action starts the browser; it takes no deadline (a
	// deadline there would end the browser with it).
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			b.cancel()
			t.Fatalf("browser: start %s: %v", bin, err)
		}
	case <-time.After(60 * time.Second):
		b.cancel()
		<-started
		t.Fatalf("browser: %s did not start within 60 s", bin)
	}
	t.Cleanup(func() {
		b.cancel()
		if t.Failed() {
			t.Logf("browser log:\n%s", logs.String())
		}
	})
	return b
}

// NewTab opens another tab in the same browser, closed at the end of the
// test.
func (b *Browser) NewTab(t testing.TB) *Browser {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("browser: new tab: %v", err)
	}
	t.Cleanup(cancel)
	return &Browser{ctx: ctx, cancel: cancel, logs: b.logs}
}

// Do runs steps in the tab, in order, within timeout.
func (b *Browser) Do(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// Eval evaluates a JavaScript expression in the tab and decodes its value;
// a promise is awaited.
func Eval[T any](b *Browser, timeout time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// WaitFor waits until the JavaScript expression is truthy in the tab.
func (b *Browser) WaitFor(timeout time.Duration, expr string) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr))
	if err != nil {
		return fmt.Errorf("browser: waiting for %s: %w", expr, err)
	}
	return nil
}

// Context returns the tab's context, for chromedp calls a test makes itself.
func (b *Browser) Context() context.Context { return b.ctx }

// Screenshot saves a PNG of the whole page to path and returns its bytes.
func (b *Browser) Screenshot(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return nil, fmt.Errorf("browser: screenshot: %w", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return nil, err
	}
	return png, nil
}
