package sipbridge

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/integration/testenv"
	"github.com/hiersip/hiersip/sipua"
)

// sipvicious returns the path of one of sipvicious's tools (Debian names it svwar, newer
// packages sipvicious_svwar); missing, the test skips, or fails when CI=true.
func sipvicious(t *testing.T, tool string) string {
	t.Helper()
	for _, name := range []string{tool, "sipvicious_" + tool} {
		if p := testenv.LookBinary(name); p != "" {
			return p
		}
	}
	testenv.Unavailable(t, "sipvicious's %s (Debian package sipvicious)", tool)
	return ""
}

// runTool runs a scanner with HOME in a temporary directory (sipvicious keeps sessions
// there) and returns its output.
func runTool(ctx context.Context, t *testing.T, path string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("$ %s %s (%v)\n%s", filepath.Base(path), strings.Join(args, " "), err, tail(out.String(), 2500))
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish: %v", filepath.Base(path), ctx.Err())
	}
	return out.String()
}

// scannerNode is a node with digest authentication, users alice and bob, both registered.
func scannerNode(t *testing.T, opts ...Option) *testNode {
	users := NewUsers()
	users.Add("alice", "pastry", "alice-secret")
	users.Add("bob", "pastry", "bob-secret")
	n := newTestNode(t, newMemDir(), "pastry", append([]Option{WithUsers(users)}, opts...)...)
	ctx := ctxT(t, 10*time.Second)
	for _, u := range []string{"alice", "bob"} {
		ua := newTestUA(t, "sip:"+u+"@pastry", n, sipua.WithUACredentials(u, u+"-secret"))
		if _, err := ua.Register(ctx, time.Hour); err != nil {
			t.Fatalf("register %s: %v", u, err)
		}
	}
	return n
}

// TestScannerResponsesUniform sends REGISTER, INVITE and OPTIONS for a registered user and
// for unknown ones, without credentials and with wrong ones: the answers must be the same
// (status, reason, header names, challenge apart from its nonce).
func TestScannerResponsesUniform(t *testing.T) {
	lim := DefaultLimits()
	lim.AuthFailures = 1000 // this test counts answers, not the throttle
	n := scannerNode(t, WithLimits(lim))
	pc, err := net.ListenPacket("udp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst, _ := net.ResolveUDPAddr("udp", n.b.UDPAddr())
	seq := 0
	ask := func(method, user, auth string) *sip.Response {
		seq++
		req := fmt.Sprintf("%s sip:%s@pastry SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKscan%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <sip:%s@pastry>;tag=s%d\r\nTo: <sip:%s@pastry>\r\nCall-ID: scan-%d\r\nCSeq: 1 %s\r\n"+
			"Contact: <sip:%s@%s>\r\n%sContent-Length: 0\r\n\r\n",
			method, user, pc.LocalAddr(), seq, user, seq, user, seq, method, user, pc.LocalAddr(), auth)
		if _, err := pc.WriteTo([]byte(req), dst); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8192)
		for {
			_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, _, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s for %s: %v", method, user, err)
			}
			m, err := sip.ParseMessage(buf[:k])
			if err != nil {
				t.Fatal(err)
			}
			if res := m.(*sip.Response); res.StatusCode != 100 {
				return res
			}
		}
	}
	// credentials: none; a made-up nonce; a fresh nonce from a challenge and a wrong password.
	creds := map[string]func(method, user string) string{
		"none": func(string, string) string { return "" },
		"made-up nonce": func(_, u string) string {
			return fmt.Sprintf(`Authorization: Digest username="%s", realm="pastry", nonce="x", uri="sip:pastry", response="00000000000000000000000000000000", algorithm=MD5`+"\r\n", u)
		},
		"wrong password": func(method, u string) string {
			ch := ask(method, u, "").GetHeader("WWW-Authenticate")
			if ch == nil {
				t.Fatalf("%s for %s: no challenge", method, u)
			}
			v := ch.Value()
			i := strings.Index(v, `nonce="`) + 7
			nonce := v[i : i+strings.Index(v[i:], `"`)]
			return fmt.Sprintf(`Authorization: Digest username="%s", realm="pastry", nonce="%s", uri="sip:%s@pastry", response="00000000000000000000000000000000", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"`+"\r\n", u, nonce, u)
		},
	}
	for _, method := range []string{"REGISTER", "INVITE", "OPTIONS", "MESSAGE"} {
		for _, kind := range []string{"none", "made-up nonce", "wrong password"} {
			known := shape(ask(method, "alice", creds[kind](method, "alice")))
			for _, u := range []string{"zed", "100", "alicea"} {
				if got := shape(ask(method, u, creds[kind](method, u))); got != known {
					t.Errorf("%s (credentials: %s): answer for registered alice\n%s\ndiffers from unknown %s\n%s", method, kind, known, u, got)
				}
			}
			t.Logf("%s, credentials: %s: every user gets %s", method, kind, strings.SplitN(known, "\n", 2)[0])
		}
	}
}

// shape is what a response shows apart from values that differ between any two answers
// (tags, nonces, Call-ID, Via, dates).
func shape(res *sip.Response) string {
	var names []string
	for _, h := range res.Headers() {
		names = append(names, strings.ToLower(h.Name()))
	}
	slices.Sort(names)
	s := fmt.Sprintf("%d %s\nheaders %v", res.StatusCode, res.Reason, names)
	if h := res.GetHeader("WWW-Authenticate"); h != nil {
		v := h.Value()
		if i := strings.Index(v, `nonce="`); i >= 0 {
			if j := strings.Index(v[i+7:], `"`); j >= 0 {
				v = v[:i+7] + "…" + v[i+7+j:]
			}
		}
		s += "\n" + v
	}
	return s
}

// TestSipvicious runs sipvicious against a node with digest authentication and two
// registered users: svmap finds it, svwar reports no user with REGISTER, INVITE or OPTIONS,
// and svcrack's password guessing is throttled before it reaches the right password.
func TestSipvicious(t *testing.T) {
	svmap, svwar, svcrack := sipvicious(t, "svmap"), sipvicious(t, "svwar"), sipvicious(t, "svcrack")
	// svcrack speaks MD5 only: with SHA-256 challenged first it cannot even start guessing,
	// and the throttle would not be tested
	n := scannerNode(t, WithDigestAlgorithms("MD5"))
	host, port, _ := net.SplitHostPort(n.b.UDPAddr())
	ctx := ctxT(t, 3*time.Minute)

	out := runTool(ctx, t, svmap, "-p", port, host)
	if !strings.Contains(out, host+":"+port) {
		t.Fatalf("svmap did not find the node")
	}

	dict := filepath.Join(t.TempDir(), "users")
	names := []string{"carol", "alice", "dave", "bob", "admin", "root"}
	for i := 100; i < 130; i++ {
		names = append(names, strconv.Itoa(i))
	}
	if err := os.WriteFile(dict, []byte(strings.Join(names, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"REGISTER", "INVITE", "OPTIONS"} {
		out := runTool(ctx, t, svwar, "-p", port, "--domain", "pastry", "--force", "-d", dict, "-m", m, host)
		// What svwar found is in its result table ("| alice | reqauth |"); its warnings also
		// quote whole responses it did not expect (a retransmitted 401 names the probed user),
		// which tell nothing about who exists.
		if rows := svwarFound(out); len(rows) > 0 {
			t.Fatalf("svwar -m %s reports %q", m, rows)
		}
	}

	before := n.b.Stats()
	pw := filepath.Join(t.TempDir(), "passwords")
	var guesses []string
	for i := 0; i < 60; i++ {
		guesses = append(guesses, fmt.Sprintf("guess%d", i))
	}
	guesses = append(guesses, "alice-secret")
	if err := os.WriteFile(pw, []byte(strings.Join(guesses, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out = runTool(ctx, t, svcrack, "-p", port, "--domain", "pastry", "-u", "alice", "-d", pw, host)
	window := time.Since(start)
	st := n.b.Stats()
	checked := st.AuthChecked - before.AuthChecked
	t.Logf("svcrack: %d passwords in its list (the right one last), %d checked by the node in %v, %d refused unchecked (503)",
		len(guesses), checked, window.Round(time.Millisecond), st.AuthThrottled-before.AuthThrottled)
	if strings.Contains(out, "The password for") || strings.Contains(out, "alice-secret") {
		t.Fatal("svcrack found the password")
	}
	lim := DefaultLimits()
	bound := uint64(lim.AuthFailures) + uint64(window/(lim.AuthWindow/time.Duration(lim.AuthFailures))) + 1
	if checked > bound {
		t.Fatalf("%d passwords checked in %v, bound %d", checked, window, bound)
	}
	if st.AuthThrottled == before.AuthThrottled {
		t.Fatal("svcrack was never throttled")
	}
}

// svwarFound returns the extensions in svwar's result table.
func svwarFound(out string) []string {
	var found []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(l), "|")
		if len(f) < 4 || f[0] != "" {
			continue
		}
		if ext := strings.TrimSpace(f[1]); ext != "" && ext != "Extension" {
			found = append(found, ext)
		}
	}
	return found
}
