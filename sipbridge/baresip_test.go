package sipbridge

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBaresip registers the baresip softphone (with digest authentication) at node 2; a
// hiersip UA at node 1 calls it (baresip answers automatically), then baresip calls the UA.
func TestBaresip(t *testing.T) {
	baresip := requireTool(t, "baresip")
	users := NewUsers()
	users.Add("carol", "pastry", "pw")
	dir := newMemDir()
	n1 := newTestNode(t, dir, "pastry")
	n2 := newTestNode(t, dir, "pastry", WithUsers(users))
	connect(t, n1, n2)
	ctx := ctxT(t, 30*time.Second)

	sipPort, consPort := freeUDPPort(t), freeUDPPort(t)
	cfgDir := t.TempDir()
	config := fmt.Sprintf(`poll_method epoll
sip_listen 127.0.0.1:%d
module_path %s
module cons.so
module g711.so
module ausine.so
module aubridge.so
module_app account.so
module_app menu.so
cons_listen 127.0.0.1:%d
audio_player aubridge,nil
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
auplay_srate 48000
audio_alert aubridge,nil
rtp_ports 40000-40999
`, sipPort, baresipModules(), consPort)
	account := fmt.Sprintf("<sip:carol@pastry;transport=udp>;auth_pass=pw;outbound=\"sip:%s;transport=udp\";regint=60;answermode=auto\n", n2.b.UDPAddr())
	if err := os.WriteFile(filepath.Join(cfgDir, "config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "accounts"), []byte(account), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, baresip, "-f", cfgDir)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() || testing.Verbose() {
			t.Logf("baresip output:\n%s", tail(out.String(), 6000))
		}
	})

	eventually(t, 15*time.Second, "baresip to register", func() bool {
		b := n2.loc.binding("sip:carol@pastry")
		return b != nil && !b.Removed && len(b.Contacts) > 0
	})

	ring := WithUAAnswer(AnswerAuto, 20*time.Millisecond)
	alice := newTestUA(t, "sip:alice@pastry", n1, ring)
	if _, err := alice.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}

	// hiersip UA → baresip
	call, err := alice.Call(ctx, "sip:carol@pastry")
	if err != nil {
		t.Fatalf("calling baresip: %v", err)
	}
	eventually(t, 10*time.Second, "baresip to establish the call", func() bool {
		return strings.Contains(out.String(), "Call established")
	})
	if err := call.Hangup(ctx); err != nil {
		t.Fatalf("BYE to baresip: %v", err)
	}
	eventually(t, 10*time.Second, "baresip to see the BYE", func() bool {
		return strings.Contains(strings.ToLower(out.String()), "connection reset by peer") ||
			strings.Contains(out.String(), "Call closed") || strings.Contains(out.String(), "terminated")
	})

	// baresip → hiersip UA
	cons, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", consPort))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if _, err := cons.Write([]byte("/dial sip:alice@pastry\n")); err != nil {
		t.Fatal(err)
	}
	var in *Call
	select {
	case in = <-alice.Incoming():
	case <-ctx.Done():
		t.Fatal("baresip's call never reached the hiersip UA")
	}
	eventually(t, 10*time.Second, "the call to be acknowledged", func() bool {
		for _, e := range alice.Ladder() {
			if !e.Sent && strings.HasPrefix(e.First, "ACK") {
				return true
			}
		}
		return false
	})
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := in.Hangup(hctx); err != nil {
		t.Fatalf("BYE from the hiersip UA to baresip: %v", err)
	}
}

func baresipModules() string {
	for _, d := range []string{"/usr/lib/baresip/modules", "/usr/lib/x86_64-linux-gnu/baresip/modules", "/usr/local/lib/baresip/modules"} {
		if _, err := os.Stat(filepath.Join(d, "account.so")); err == nil {
			return d
		}
	}
	return "/usr/lib/baresip/modules"
}
