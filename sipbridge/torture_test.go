package sipbridge

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func tortureDir(t *testing.T) string {
	t.Helper()
	// the sipgo module in the module cache holds RFC 4475's messages
	out, err := goListDir("github.com/emiago/sipgo")
	if err != nil {
		t.Skipf("sipgo module dir: %v", err)
	}
	return filepath.Join(out, "sip", "testdata", "torture")
}

// TestTorture sends RFC 4475's torture messages over UDP to the UA-facing listener: the node
// must survive, answer every invalid request that sipgo's parser accepts with a 4xx (or 505),
// and still complete a call afterwards.
func TestTorture(t *testing.T) {
	dir := tortureDir(t)
	n1, n2 := twoNodes(t)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst, _ := net.ResolveUDPAddr("udp", n1.b.UDPAddr())

	files, _ := filepath.Glob(filepath.Join(dir, "invalid", "*.dat"))
	valid, _ := filepath.Glob(filepath.Join(dir, "valid", "*.dat"))
	if len(files) == 0 {
		t.Fatal("no torture messages found")
	}
	parsed, answered := 0, 0
	for _, f := range append(files, valid...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f)
		msg, perr := sip.ParseMessage(data)
		req, isReq := msg.(*sip.Request)
		if _, err := conn.WriteTo(data, dst); err != nil {
			t.Fatal(err)
		}
		if perr != nil || !isReq || req.IsAck() {
			t.Logf("%s: not a parseable request (%v); sent only", name, perr)
			continue
		}
		invalid := strings.Contains(name, "invalid/")
		if invalid {
			parsed++
		}
		// collect responses to this message for a short while
		var got []int
		deadline := time.Now().Add(1500 * time.Millisecond)
		branch := ""
		if v := req.Via(); v != nil {
			branch, _ = v.Params.Get("branch")
		}
		for time.Now().Before(deadline) {
			_ = conn.SetReadDeadline(deadline)
			buf := make([]byte, 65535)
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			rm, err := sip.ParseMessage(buf[:n])
			if err != nil {
				continue
			}
			res, ok := rm.(*sip.Response)
			if !ok || res.Via() == nil {
				continue
			}
			if b, _ := res.Via().Params.Get("branch"); b != branch {
				continue
			}
			got = append(got, res.StatusCode)
			if res.StatusCode >= 200 {
				break
			}
		}
		final := 0
		if len(got) > 0 {
			final = got[len(got)-1]
		}
		t.Logf("%s: %s -> %v", name, req.Method, got)
		if invalid {
			if final < 400 || final >= 600 {
				t.Errorf("%s: invalid request answered %v, want a 4xx", name, got)
			} else {
				answered++
			}
		}
	}
	t.Logf("invalid messages: %d of %d parsed by sipgo, %d answered 4xx/5xx", parsed, len(files), answered)

	// the node still works
	ctx := ctxT(t, 20*time.Second)
	ring := WithUAAnswer(AnswerAuto, 10*time.Millisecond)
	alice := newTestUA(t, "sip:alice@pastry", n1, ring)
	bob := newTestUA(t, "sip:bob@pastry", n2, ring)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	call, err := alice.Call(ctx, "sip:bob@pastry")
	if err != nil {
		t.Fatalf("call after torture: %v", err)
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
}
