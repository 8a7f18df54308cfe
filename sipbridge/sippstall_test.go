//go:build !race

package sipbridge

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestSippNoStall runs sipp's uac as hiersip-bench does (testdata/uac_strict.xml: the
// built-in uac flow, ACK and BYE routed by the Record-Route set) through two nodes to
// sipp's uas at SIPP_STALL_RATE calls/s (default 300) for SIPP_STALL_SECONDS (default
// 10), and wants every call to succeed with no retransmission: any reader, queue or
// relay of either node that stalls for half a second (T1) shows up as a retransmission.
//
// It is built without the race detector only (which makes the nodes several times
// slower): scripts/test.sh runs it in a go test invocation of its own, without -race,
// after the main run, so that it has the machine to itself. The default rate takes a
// node about a tenth of a core on this project's 2-core CI machine.
func TestSippNoStall(t *testing.T) {
	sipp := requireTool(t, "sipp")
	if testing.Short() {
		t.Skip("short mode")
	}
	rate, secs := envInt("SIPP_STALL_RATE", 300), envInt("SIPP_STALL_SECONDS", 10)
	calls := rate * secs
	dir := newMemDir()
	n1, n2 := benchNode(t, dir), benchNode(t, dir)
	connect(t, n1, n2)
	ctx := ctxT(t, time.Duration(secs+120)*time.Second)
	work := t.TempDir()
	uasPort := freeUDPPort(t)
	uas := exec.CommandContext(ctx, sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", strconv.Itoa(uasPort), "-nostdin",
		"-buff_size", "8388608")
	uas.Dir = work
	var uasOut bytes.Buffer
	uas.Stdout, uas.Stderr = &uasOut, &uasOut
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = uas.Process.Kill(); _ = uas.Wait() }()
	reg := newTestUA(t, "sip:service@pastry", n2)
	if _, err := reg.RegisterContact(ctx, sip.Uri{Scheme: "sip", User: "service", Host: "127.0.0.1", Port: uasPort}, time.Hour); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the binding at node 1", func() bool { return n1.loc.binding("sip:service@pastry") != nil })
	scen, err := filepath.Abs("testdata/uac_strict.xml")
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, calls, rate int) (ok, failed, retrans int) {
		t.Helper()
		stat := filepath.Join(work, name+".csv")
		uac := exec.CommandContext(ctx, sipp, n1.b.UDPAddr(), "-sf", scen, "-key", "rdomain", "pastry", "-s", "service",
			"-i", "127.0.0.1", "-p", strconv.Itoa(freeUDPPort(t)), "-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate),
			"-l", strconv.Itoa(max(rate, 100)), "-d", "0", "-nostdin", "-buff_size", "8388608", "-recv_timeout", "5000",
			"-timeout", strconv.Itoa(calls/rate+60)+"s", "-timeout_error", "-max_retrans", "3", "-trace_stat", "-stf", stat, "-fd", "1")
		uac.Dir = work
		var out bytes.Buffer
		uac.Stdout, uac.Stderr = &out, &out
		runErr := uac.Run()
		data, err := os.ReadFile(stat)
		if err != nil {
			t.Fatalf("sipp uac %s: %v, no statistics: %v\n%s", name, runErr, err, tail(out.String(), 2000))
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		head, last := strings.Split(lines[0], ";"), strings.Split(lines[len(lines)-1], ";")
		col := func(n string) int {
			for i, h := range head {
				if h == n && i < len(last) {
					v, _ := strconv.Atoi(last[i])
					return v
				}
			}
			t.Fatalf("no column %s in sipp's statistics", n)
			return 0
		}
		return col("SuccessfulCall(C)"), col("FailedCall(C)"), col("Retransmissions(C)")
	}
	if ok, _, _ := run("warmup", 20, 20); ok != 20 { // streams opened, caches filled
		t.Fatalf("warm-up: %d of 20 calls", ok)
	}
	start := time.Now()
	ok, failed, retrans := run("load", calls, rate)
	t.Logf("sipp: %d calls at %d calls/s through two nodes in %v: %d ok, %d failed, %d retransmissions",
		calls, rate, time.Since(start).Round(time.Millisecond), ok, failed, retrans)
	if ok != calls || failed != 0 || retrans != 0 {
		t.Fatalf("not clean: %d of %d calls ok, %d failed, %d retransmissions", ok, calls, failed, retrans)
	}
}
