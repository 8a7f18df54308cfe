package sipbridge

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// requireTool skips when a tool is missing, but fails under CI=true.
func requireTool(t *testing.T, path string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", path, err)
		}
		t.Skipf("%s not installed: %v", path, err)
	}
	return p
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// TestSippCalls runs sipp's built-in uac against node 1 and sipp's uas registered behind
// node 2: 100 calls, none may fail.
func TestSippCalls(t *testing.T) {
	sipp := requireTool(t, "sipp")
	if testing.Short() {
		t.Skip("short mode")
	}
	t.Run("udp", func(t *testing.T) { runSipp(t, sipp, "u1", envInt("SIPP_CALLS", 100), envInt("SIPP_RATE", 50)) })
	t.Run("tcp", func(t *testing.T) { runSipp(t, sipp, "t1", 50, 50) })
}

// runSipp places calls from sipp's uac (transport mode tmode towards node 1) to sipp's uas
// (UDP, registered behind node 2).
func runSipp(t *testing.T, sipp, tmode string, calls, rate int) {
	n1, n2 := twoNodes(t)
	ctx := ctxT(t, time.Duration(90+calls/rate)*time.Second)
	uasPort := freeUDPPort(t)
	dir := t.TempDir()

	uas := exec.CommandContext(ctx, sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", strconv.Itoa(uasPort),
		"-m", strconv.Itoa(calls), "-nostdin", "-trace_err", "-error_file", dir+"/uas_err.log")
	uas.Dir = dir
	var uasOut bytes.Buffer
	uas.Stdout, uas.Stderr = &uasOut, &uasOut
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = uas.Process.Kill(); _ = uas.Wait() }()

	// register sipp's uas contact as sip:service@pastry, on its behalf
	reg := newTestUA(t, "sip:service@pastry", n2)
	contact := sip.Uri{Scheme: "sip", User: "service", Host: "127.0.0.1", Port: uasPort}
	if _, err := reg.RegisterContact(ctx, contact, time.Hour); err != nil {
		t.Fatal(err)
	}

	target := n1.b.UDPAddr()
	if tmode == "t1" {
		target = n1.b.TCPAddr()
	}
	uacPort := freeUDPPort(t)
	uac := exec.CommandContext(ctx, sipp, "-sn", "uac", target, "-s", "service", "-t", tmode,
		"-i", "127.0.0.1", "-p", strconv.Itoa(uacPort), "-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate), "-l", strconv.Itoa(rate), "-d", "50",
		"-nostdin", "-recv_timeout", "10000", "-timeout", strconv.Itoa(60+calls/rate)+"s", "-timeout_error",
		"-trace_err", "-error_file", dir+"/uac_err.log", "-trace_stat", "-stf", dir+"/uac_stat.csv")
	uac.Dir = dir
	var uacOut bytes.Buffer
	uac.Stdout, uac.Stderr = &uacOut, &uacOut
	start := time.Now()
	err := uac.Run()
	elapsed := time.Since(start)
	if err != nil {
		errs, _ := os.ReadFile(dir + "/uac_err.log")
		t.Fatalf("sipp uac: %v\n%s\nerrors:\n%.4000s", err, tail(uacOut.String(), 3000), errs)
	}
	t.Logf("sipp (%s): %d calls through two nodes, zero failures, in %v", tmode, calls, elapsed.Round(time.Millisecond))
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- uas.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			errs, _ := os.ReadFile(dir + "/uas_err.log")
			t.Fatalf("sipp uas: %v\n%s\nerrors:\n%.6000s", err, tail(uasOut.String(), 3000), errs)
		}
	case <-waitCtx.Done():
		t.Fatal("sipp uas did not finish its calls")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
