package softphone

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/testenv"
)

// Linphone is a running linphonec (Debian's linphone-cli) registered with a node. It
// answers calls automatically; with no sound card it plays WAV files instead
// ("soundcard use files"), and PlayTone makes it send a 440 Hz tone in the call.
type Linphone struct {
	t    testing.TB
	cmd  *exec.Cmd
	out  lockedBuffer
	in   io.WriteCloser
	tone string // the WAV file of PlayTone
	done chan struct{}
}

// LinphoneOptions place a linphonec instance.
type LinphoneOptions struct {
	// RTPPorts is linphone's audio RTP port range, e.g. "42000-42009" (default
	// 42000-42999).
	RTPPorts string
	// SIPPort is the UDP port linphone listens on (default a free port of this
	// machine's loopback).
	SIPPort int
	// Command makes the command that runs linphonec, e.g. inside a network namespace
	// (default exec.Command).
	Command func(name string, args ...string) *exec.Cmd
}

// StartLinphone starts linphonec with acct, listening on loopback, registered with
// acct.Node (its registrar and, through a Route, its outbound proxy). It stops linphonec
// at the end of the test and logs its output when the test failed.
func StartLinphone(t testing.TB, acct Account, o LinphoneOptions) *Linphone {
	t.Helper()
	bin := testenv.RequireBinary(t, "linphonec")
	if o.RTPPorts == "" {
		o.RTPPorts = "42000-42999"
	}
	if o.SIPPort == 0 {
		o.SIPPort = freeUDPPort(t)
	}
	if o.Command == nil {
		o.Command = exec.Command
	}
	dir := t.TempDir()
	// linphonec keeps a database under $HOME/.local/share/linphone and stops short
	// without the directory.
	if err := os.MkdirAll(filepath.Join(dir, ".local", "share", "linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	user, _, _ := strings.Cut(strings.TrimPrefix(acct.AOR, "sip:"), "@")
	rc := fmt.Sprintf(`[sip]
sip_port=%d
sip_tcp_port=-1
sip_tls_port=-1
default_proxy=0
[rtp]
audio_rtp_port=%s
[sound]
echocancellation=0
[video]
automatically_initiate=0
automatically_accept=0
[proxy_0]
reg_proxy=<sip:%s>
reg_route=<sip:%s;lr>
reg_identity=%s
reg_expires=600
reg_sendregister=1
`, o.SIPPort, o.RTPPorts, acct.Node, acct.Node, acct.AOR)
	if acct.Password != "" {
		rc += fmt.Sprintf("[auth_info_0]\nusername=%s\npasswd=%s\n", user, acct.Password)
	}
	l := &Linphone{t: t, tone: filepath.Join(dir, "tone.wav"), done: make(chan struct{})}
	for name, data := range map[string][]byte{"linphonerc": []byte(rc), "tone.wav": toneWAV(30 * time.Second)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l.cmd = o.Command(bin, "-c", filepath.Join(dir, "linphonerc"), "-a", "-d", "0")
	l.cmd.Env = append(os.Environ(), "HOME="+dir)
	l.cmd.Stdout, l.cmd.Stderr = &l.out, &l.out
	var err error
	if l.in, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = l.cmd.Wait()
		close(l.done)
	}()
	t.Cleanup(func() {
		l.Stop()
		if t.Failed() || testing.Verbose() {
			t.Logf("linphonec output:\n%s", l.Output())
		}
	})
	if err := l.Command("soundcard use files"); err != nil {
		t.Fatal(err)
	}
	return l
}

// Command sends a linphonec command such as "call sip:alice@pku.can" or "terminate".
func (l *Linphone) Command(cmd string) error {
	_, err := io.WriteString(l.in, cmd+"\n")
	return err
}

// PlayTone makes linphonec send its 440 Hz tone in the current call.
func (l *Linphone) PlayTone() error { return l.Command("play " + l.tone) }

// Output returns what linphonec printed so far.
func (l *Linphone) Output() string { return l.out.String() }

// WaitFor waits until linphonec's output contains one of subs.
func (l *Linphone) WaitFor(ctx context.Context, subs ...string) error {
	return waitOutput(ctx, l.Output, "linphonec", subs)
}

// Stop stops linphonec (a call is not hung up first).
func (l *Linphone) Stop() {
	_ = l.cmd.Process.Kill()
	<-l.done
	_ = l.in.Close()
}

// toneWAV is d of a 440 Hz tone as a WAV file: 8 kHz, 16-bit mono PCM.
func toneWAV(d time.Duration) []byte {
	const rate = 8000
	n := int(d.Seconds() * rate)
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + 2*n))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1)) // PCM
	le(uint16(1)) // mono
	le(uint32(rate))
	le(uint32(2 * rate))
	le(uint16(2))
	le(uint16(16))
	b.WriteString("data")
	le(uint32(2 * n))
	for i := range n {
		le(int16(8000 * math.Sin(2*math.Pi*440*float64(i)/rate)))
	}
	return b.Bytes()
}
