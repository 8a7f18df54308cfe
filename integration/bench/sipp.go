package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// uacScenario is sipp's built-in uac with two changes: the Request-URI and
// To host come from -key rdomain (so that a call can name another domain),
// and ACK and BYE carry the 200 OK's Record-Route as Route (sipp's uas
// records none, so in practice they go like the built-in uac's: to the
// address called, with the INVITE's Request-URI).
const uacScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="hiersip bench uac">
  <send retrans="500" start_rtd="1">
    <![CDATA[
      INVITE sip:[service]@[rdomain] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[rdomain]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Subject: Performance Test
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true" rtd="1"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[rdomain] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[rdomain]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      [routes]
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause/>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[rdomain] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[rdomain]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      [routes]
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
`

func freeUDPPort() (int, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port, nil
}

// sippUAS is a running sipp uas.
type sippUAS struct {
	cmd  *exec.Cmd
	addr string
	out  bytes.Buffer
}

func startUAS(bin, dir string) (*sippUAS, error) {
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	u := &sippUAS{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	u.cmd = exec.Command(bin, "-sn", "uas", "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-nostdin", "-buff_size", "8388608")
	dieWithParent(u.cmd)
	u.cmd.Dir = dir
	u.cmd.Stdout, u.cmd.Stderr = &u.out, &u.out
	if err := u.cmd.Start(); err != nil {
		return nil, err
	}
	// Wait until its socket is bound: a probe OPTIONS is answered (or at
	// least the port is taken).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		pc, err := net.ListenPacket("udp", u.addr)
		if err != nil {
			return u, nil // taken by sipp
		}
		pc.Close()
		time.Sleep(5 * time.Millisecond)
	}
	u.Close()
	return nil, fmt.Errorf("bench: sipp uas did not bind %s", u.addr)
}

func (u *sippUAS) Close() {
	_ = u.cmd.Process.Kill()
	_ = u.cmd.Wait()
}

// sippResult is the outcome of one sipp uac run.
type sippResult struct {
	Rate, Calls, Successful, Failed, Retrans int
	Elapsed                                  time.Duration
	ProxyCPU                                 time.Duration
	Aborted                                  bool // cut short at the first failure or retransmission
}

func (r sippResult) clean() bool {
	return !r.Aborted && r.Failed == 0 && r.Retrans == 0 && r.Successful == r.Calls
}

// runSippUAC runs sipp's uac (the scenario above) against target, calling
// service@rdomain at rate calls/s for dur, and reads its final statistics.
// cpu, when not nil, is sampled before and after the run.
//
// With abortEarly the run is cut at the first failed call or
// retransmission (sipp writes its statistics every second), so that a rate
// that is not clean costs a second or two rather than dur.
func runSippUAC(ctx context.Context, bin, dir, target, rdomain string, rate int, dur time.Duration, cpu func() time.Duration, abortEarly bool) (sippResult, error) {
	calls := int(float64(rate) * dur.Seconds())
	if calls < 1 {
		calls = 1
	}
	scen := filepath.Join(dir, "uac.xml")
	if err := os.WriteFile(scen, []byte(uacScenario), 0o644); err != nil {
		return sippResult{}, err
	}
	port, err := freeUDPPort()
	if err != nil {
		return sippResult{}, err
	}
	stat := filepath.Join(dir, fmt.Sprintf("stat-%d.csv", port))
	limit := max(rate, 100) // concurrent calls: a call lasts well under 1 s when healthy
	cmd := exec.CommandContext(ctx, bin, target, "-sf", scen, "-key", "rdomain", rdomain, "-s", "service",
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate), "-l", strconv.Itoa(limit),
		"-d", "0", "-nostdin", "-buff_size", "8388608", "-recv_timeout", "5000", "-timeout", fmt.Sprintf("%ds", int(dur.Seconds())+30),
		"-timeout_error", "-max_retrans", "3", "-trace_stat", "-stf", stat, "-fd", "1")
	cmd.Dir = dir
	dieWithParent(cmd)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	var c0 time.Duration
	if cpu != nil {
		c0 = cpu()
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sippResult{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var runErr error
	aborted := false
	tick := time.NewTicker(250 * time.Millisecond)
wait:
	for {
		select {
		case runErr = <-done:
			break wait
		case <-tick.C:
			if !abortEarly || aborted {
				continue
			}
			if st, ok := readSippStat(stat); ok && (st.Failed > 0 || st.Retrans > 0) {
				aborted = true
				_ = cmd.Process.Kill()
			}
		}
	}
	tick.Stop()
	res := sippResult{Rate: rate, Calls: calls, Elapsed: time.Since(start)}
	if cpu != nil {
		res.ProxyCPU = cpu() - c0
	}
	st, ok := readSippStat(stat)
	if !ok {
		return res, fmt.Errorf("bench: sipp uac: %v: no statistics: %s", runErr, tailStr(out.String(), 1500))
	}
	res.Successful, res.Failed, res.Retrans, res.Aborted = st.Successful, st.Failed, st.Retrans, aborted
	return res, nil
}

// readSippStat reads the last line of sipp's -trace_stat file.
func readSippStat(path string) (sippResult, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return sippResult{}, false
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 {
		return sippResult{}, false
	}
	head := strings.Split(lines[0], ";")
	last := strings.Split(lines[len(lines)-1], ";")
	col := func(name string) int {
		for i, h := range head {
			if h == name && i < len(last) {
				v, _ := strconv.Atoi(last[i])
				return v
			}
		}
		return -1
	}
	return sippResult{Successful: col("SuccessfulCall(C)"), Failed: col("FailedCall(C)"), Retrans: col("Retransmissions(C)")}, true
}
