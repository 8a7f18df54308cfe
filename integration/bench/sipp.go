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

// uacScenario is sipp's built-in uac with two changes: the Request-URI and To host of
// the INVITE come from -key rdomain (so that a call can name another domain), and ACK
// and BYE are sent as RFC 3261 dialogs are: to the remote target (the 200 OK's
// Contact, [next_url]) along the route set of its Record-Route ([routes]). sipp sends
// every request to the address it was given, the first hop of that route.
var uacScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
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

` + sippSDP + `
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true" rtd="1"/>
  <send>
` + uacInDialog("ACK", 1) + `  </send>
  <pause/>
  <send retrans="500">
` + uacInDialog("BYE", 2) + `  </send>
  <recv response="200" crlf="true"/>
</scenario>
`

// sippSDP is the SDP body of sipp's built-in scenarios, in a CDATA section.
const sippSDP = `      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
`

// uacInDialog is a request of the uac's dialog (ACK, BYE) in a CDATA section: to the
// remote target along the route set.
func uacInDialog(method string, cseq int) string {
	return `    <![CDATA[
      ` + method + ` [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[rdomain]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: ` + strconv.Itoa(cseq) + " " + method + `
      [routes]
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
`
}

// uasScenario is sipp's built-in uas with the INVITE's Record-Route copied into its
// 180 and 200 (a header that is absent drops its line), as a user agent server must
// (RFC 3261 12.1.1), so that the caller's ACK and BYE follow the proxies that recorded
// the route.
var uasScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="hiersip bench uas">
  <recv request="INVITE" crlf="true"/>
  <send>
` + uasReply("180 Ringing", true, false) + `  </send>
  <send retrans="500">
` + uasReply("200 OK", true, true) + `  </send>
  <recv request="ACK" optional="true" rtd="true" crlf="true"/>
  <recv request="BYE"/>
  <send>
` + uasReply("200 OK", false, false) + `  </send>
  <timewait milliseconds="4000"/>
</scenario>
`

// uasReply is a response of the uas in a CDATA section: to the INVITE (invite: with its
// Record-Route and a To tag) or to the BYE, with the SDP answer when sdp.
func uasReply(status string, invite, sdp bool) string {
	route, tag := "", ""
	if invite {
		route, tag = "\n      [last_Record-Route:]", ";tag=[pid]SIPpTag01[call_number]"
	}
	body := "      Content-Length: 0\n"
	if sdp {
		body = "      Content-Type: application/sdp\n      Content-Length: [len]\n\n" + sippSDP
	}
	return `    <![CDATA[

      SIP/2.0 ` + status + `
      [last_Via:]` + route + `
      [last_From:]
      [last_To:]` + tag + `
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
` + body + `
    ]]>
`
}

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
	stat string // its -trace_stat file
	out  bytes.Buffer
}

func startUAS(bin, dir string) (*sippUAS, error) {
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	scen := filepath.Join(dir, "uas.xml")
	if err := os.WriteFile(scen, []byte(uasScenario), 0o644); err != nil {
		return nil, err
	}
	u := &sippUAS{addr: fmt.Sprintf("127.0.0.1:%d", port), stat: filepath.Join(dir, fmt.Sprintf("uas-stat-%d.csv", port))}
	u.cmd = exec.Command(bin, "-sf", scen, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-nostdin", "-buff_size", "8388608",
		"-trace_stat", "-stf", u.stat, "-fd", "1")
	dieWithParent(u.cmd)
	u.cmd.Dir = dir
	u.cmd.Stdout, u.cmd.Stderr = &u.out, &u.out
	if err := u.cmd.Start(); err != nil {
		return nil, err
	}
	// Wait until its socket is bound (the port is taken).
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

func (u *sippUAS) pid() int { return u.cmd.Process.Pid }

// stats returns the uas's cumulative statistics as of its first statistics line
// written after t (sipp writes one a second; it waits up to 3 s for it).
func (u *sippUAS) stats(ctx context.Context, t time.Time) (sippStat, bool) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		if fi, err := os.Stat(u.stat); err == nil && fi.ModTime().After(t) {
			return readSippStat(u.stat)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return readSippStat(u.stat)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SippRun is the outcome of one sipp uac run.
type SippRun struct {
	Rate       int           `json:"rate"`
	Calls      int           `json:"calls"` // calls the run was to place
	Successful int           `json:"successful"`
	Failed     int           `json:"failed"`
	Retrans    int           `json:"retrans"` // the uac's retransmissions
	Elapsed    time.Duration `json:"elapsed_ns"`
	Aborted    bool          `json:"aborted,omitempty"` // cut short at the first failure or retransmission
	// UASRetrans and UASFailed are the uas's retransmissions (of 200 OKs whose ACK did
	// not come) and failed calls during the run; -1 when unknown.
	UASRetrans int `json:"uas_retrans"`
	UASFailed  int `json:"uas_failed"`
	// GenCPU is the CPU time of the sipp uac process.
	GenCPU time.Duration `json:"uac_cpu_ns"`
	// PathCPU is, in a ladder's try, the CPU per call (µs) of each process on the path.
	PathCPU map[string]float64 `json:"path_cpu_us,omitempty"`
	// Diag is, after a try that did not pass, what the nodes' /metrics said (in flight,
	// media sessions, refusals by reason, INVITEs by final status).
	Diag string `json:"diag,omitempty"`
}

// clean reports whether the run passed: every call succeeded, none failed, nothing
// was retransmitted on either side, and it ran its whole duration.
func (r SippRun) clean() bool {
	return !r.Aborted && r.Failed == 0 && r.Retrans == 0 && r.Successful == r.Calls && r.UASRetrans <= 0 && r.UASFailed <= 0
}

// runSippUAC runs sipp's uac (the scenario above) against target, calling
// service@rdomain at rate calls/s for dur, and reads its final statistics and those of
// uas (when not nil) over the run.
//
// With abortEarly the run is cut at the first failed call or
// retransmission (sipp writes its statistics every second), so that a rate
// that is not clean costs a second or two rather than dur.
func runSippUAC(ctx context.Context, bin, dir string, uas *sippUAS, target, rdomain string, rate int, dur time.Duration, abortEarly bool) (SippRun, error) {
	calls := int(float64(rate) * dur.Seconds())
	if calls < 1 {
		calls = 1
	}
	scen := filepath.Join(dir, "uac.xml")
	if err := os.WriteFile(scen, []byte(uacScenario), 0o644); err != nil {
		return SippRun{}, err
	}
	port, err := freeUDPPort()
	if err != nil {
		return SippRun{}, err
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
	var u0 sippStat
	uasOK := false
	if uas != nil {
		u0, uasOK = uas.stats(ctx, time.Now())
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return SippRun{}, err
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
	end := time.Now()
	res := SippRun{Rate: rate, Calls: calls, Elapsed: end.Sub(start), UASRetrans: -1, UASFailed: -1}
	if ps := cmd.ProcessState; ps != nil {
		res.GenCPU = ps.UserTime() + ps.SystemTime()
	}
	st, ok := readSippStat(stat)
	if !ok {
		return res, fmt.Errorf("bench: sipp uac: %v: no statistics: %s", runErr, tailStr(out.String(), 1500))
	}
	res.Successful, res.Failed, res.Retrans, res.Aborted = st.Successful, st.Failed, st.Retrans, aborted
	if uasOK {
		if u1, ok := uas.stats(ctx, end); ok {
			res.UASRetrans, res.UASFailed = u1.Retrans-u0.Retrans, u1.Failed-u0.Failed
		}
	}
	return res, nil
}

// sippStat are the cumulative counters of a sipp statistics line.
type sippStat struct{ Successful, Failed, Retrans int }

// readSippStat reads the last line of sipp's -trace_stat file.
func readSippStat(path string) (sippStat, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return sippStat{}, false
	}
	return parseSippStat(string(data))
}

// parseSippStat reads the cumulative counters of the last line of a -trace_stat file
// (';'-separated, a header line first); a last line still being written (no newline
// yet) is left out.
func parseSippStat(data string) (sippStat, bool) {
	if i := strings.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	}
	lines := strings.Split(strings.TrimSpace(data), "\n")
	if len(lines) < 2 {
		return sippStat{}, false
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
	return sippStat{Successful: col("SuccessfulCall(C)"), Failed: col("FailedCall(C)"), Retrans: col("Retransmissions(C)")}, true
}
