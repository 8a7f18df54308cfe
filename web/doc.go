// Package web holds hiersip's page for people: the node's status (role,
// peers and their path, registrations, calls, media sessions, read from the
// node's /status JSON every 2 s) and a browser phone that registers and
// calls over a secure WebSocket with JsSIP. Handler serves it from files
// embedded in the binary: no CDN, nothing fetched at run time.
//
// # The bundle
//
// static/app.js is built from src/ with esbuild and committed; go build
// needs no npm. To change the page, edit src/ and rebuild:
//
//	cd web && npm ci && npm run build
//
// package.json pins JsSIP and esbuild, package-lock.json pins the rest; a
// test (TestBundleUpToDate) rebuilds the bundle where npm is available and
// fails when the committed static/app.js differs.
//
// # Query parameters
//
// status (the status URL; default /status, same origin), wss (the phone's
// server, default wss://<page host>/sip), aor, target, and autoanswer=1.
// window.hiersip.phone has state() and rtpStats() (inbound and outbound RTP
// packets of the call, from WebRTC's own statistics) for tests.
//
// # Security
//
// Everything the status JSON holds is put into the page as text, never as
// HTML: AORs and contact URIs are chosen by whoever registers, and a
// contact such as "<img onerror=…>" stays text. The Content-Security-Policy
// allows scripts and styles from the node only (no inline script), so an
// injected one would not run anyway; the page cannot be framed
// (frame-ancestors 'none'). The phone's password stays in the page's
// memory, sent only inside the digest exchange over the WebSocket the user
// chose. The handler serves only GET and HEAD of the embedded files. What
// the page may read is what /status serves: mount it only where /status may
// be read.
package web
