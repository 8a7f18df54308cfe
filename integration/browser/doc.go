// Package browser runs a headless Chromium (Debian's chromium) for tests,
// driven over the DevTools protocol with github.com/chromedp/chromedp: fake
// camera and microphone (--use-fake-device-for-media-stream), media
// permission granted without a prompt (--use-fake-ui-for-media-stream), no
// sandbox (tests run as root), no GPU, and none of Chromium's own network
// traffic (background networking, component updates, sync, QUIC off), as
// this machine's closed network needs. Each Browser has its own empty
// profile in the test's temporary directory and is closed at the end of the
// test.
//
// A test that needs it skips when chromium is missing, or fails with
// CI=true (integration/testenv).
package browser
