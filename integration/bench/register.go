package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// RegStep is one rate of the open-loop REGISTER ladder.
type RegStep struct {
	Rate     int           `json:"rate"`
	Duration time.Duration `json:"duration_ns"`
	Sent     int           `json:"sent"`
	// OK got a 200 within the bound, Late a 200 after it, Refused another final
	// answer, Lost none (within the bound and 2 s more).
	OK      int `json:"ok"`
	Late    int `json:"late"`
	Refused int `json:"refused"`
	Lost    int `json:"lost"`
	// P50US, P95US and MaxUS are the REGISTER → 200 OK times (µs) of the 200s.
	P50US float64 `json:"p50_us"`
	P95US float64 `json:"p95_us"`
	MaxUS float64 `json:"max_us"`
	// CPUUS is the CPU per REGISTER of each node of the domain (registrar first).
	CPUUS []ProcCost `json:"cpu"`
}

func (s RegStep) passed() bool { return s.Sent > 0 && s.OK == s.Sent }

func (s RegStep) String() string {
	st := fmt.Sprintf("%d/s: %d sent, %d ok", s.Rate, s.Sent, s.OK)
	if s.Late+s.Refused+s.Lost > 0 {
		st += fmt.Sprintf(", %d late, %d refused, %d lost", s.Late, s.Refused, s.Lost)
	}
	return st + fmt.Sprintf(", p50 %s p95 %s max %s µs", num(s.P50US), num(s.P95US), num(s.MaxUS))
}

// RegisterLadder is the outcome of the register section.
type RegisterLadder struct {
	Bound     time.Duration `json:"bound_ns"`
	Steps     []RegStep     `json:"steps"`
	Sustained int           `json:"sustained"` // highest rate up to which every step passed
}

// regResult is what became of one REGISTER of an open-loop run.
type regResult struct {
	sent atomic.Int64 // unix ns
	got  atomic.Int64 // latency ns of the final answer, 0 before it
	code atomic.Int32
}

// openLoopRegister sends n REGISTERs (first registrations of AORs sip:<prefix><i>@dom,
// each with a contact of its own, Expires 3600) to addr at rate per second, on a fixed
// schedule whatever the answers (open loop, no retransmission), and waits for the
// answers until bound + 2 s after the last. It returns the step's outcome and the
// indices that got no 200 OK within bound.
func openLoopRegister(ctx context.Context, addr, dom, prefix string, n, rate int, bound time.Duration) (RegStep, []int, error) {
	st := RegStep{Rate: rate}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return st, nil, err
	}
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	dst := mustUDP(addr)
	local := conn.LocalAddr().String()
	res := make([]regResult, n)
	tag := randHex(4)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			k, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			now := time.Now().UnixNano()
			msg, err := sip.ParseMessage(append([]byte(nil), buf[:k]...))
			if err != nil {
				continue
			}
			rs, ok := msg.(*sip.Response)
			if !ok || rs.StatusCode < 200 || rs.Via() == nil {
				continue
			}
			branch, _ := rs.Via().Params.Get("branch")
			i, err := strconv.Atoi(strings.TrimPrefix(branch, "z9hG4bK-"+tag+"-"))
			if err != nil || i < 0 || i >= n {
				continue
			}
			if res[i].got.Load() == 0 {
				res[i].code.Store(int32(rs.StatusCode))
				res[i].got.Store(max(now-res[i].sent.Load(), 1))
			}
		}
	})
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			select {
			case <-ctx.Done():
				conn.Close()
				wg.Wait()
				return st, nil, ctx.Err()
			case <-time.After(d):
			}
		}
		aor := fmt.Sprintf("sip:%s%d@%s", prefix, i, dom)
		callID := fmt.Sprintf("%s-%s-%d@reg", tag, prefix, i)
		msg := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s-%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <%s>;tag=%s\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: 1 REGISTER\r\nContact: <sip:%s%d@127.0.0.1:%d>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
			dom, local, tag, i, aor, tag, aor, callID, prefix, i, 10000+i%50000)
		res[i].sent.Store(time.Now().UnixNano())
		if _, err := conn.WriteToUDP([]byte(msg), dst); err != nil {
			conn.Close()
			wg.Wait()
			return st, nil, err
		}
	}
	st.Sent, st.Duration = n, time.Since(start)
	deadline := time.Now().Add(bound + 2*time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := true
		for i := range res {
			if res[i].got.Load() == 0 {
				done = false
				break
			}
		}
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn.Close()
	wg.Wait()
	var lat []float64
	var missing []int
	for i := range res {
		got, code := time.Duration(res[i].got.Load()), res[i].code.Load()
		switch {
		case got == 0:
			st.Lost++
		case code != 200:
			st.Refused++
		case got > bound:
			st.Late++
		default:
			st.OK++
		}
		if got > 0 && code == 200 {
			lat = append(lat, us(got))
		}
		if got == 0 || code != 200 || got > bound {
			missing = append(missing, i)
		}
	}
	if len(lat) > 0 {
		st.P50US, st.P95US, st.MaxUS = pctl(lat, 0.5), pctl(lat, 0.95), pctl(lat, 1)
	}
	return st, missing, nil
}

// fillRegistrations registers n AORs sip:<prefix><i>@<node's domain> at node with the
// open-loop generator at rate, then again, one by one, those that got no 200 OK in
// time, and waits until the node holds them all (hiersip_local_registrations). It
// returns how many the open loop missed.
func fillRegistrations(ctx context.Context, n *procNode, prefix string, count, rate int) (int, error) {
	m0, err := n.metrics(ctx)
	if err != nil {
		return 0, err
	}
	st, missing, err := openLoopRegister(ctx, n.sip, n.spec.Domain, prefix, count, rate, time.Second)
	if err != nil {
		return 0, err
	}
	if len(missing) > 0 {
		c, err := newSIPClient()
		if err != nil {
			return 0, err
		}
		defer c.Close()
		for _, i := range missing {
			aor := fmt.Sprintf("sip:%s%d@%s", prefix, i, n.spec.Domain)
			if err := registerOK(ctx, c, n.sip, "sip:"+n.spec.Domain, aor, fmt.Sprintf("sip:%s%d@127.0.0.1:%d", prefix, i, 10000+i%50000)); err != nil {
				return len(missing), fmt.Errorf("registering %s again: %w", aor, err)
			}
		}
	}
	want := m0["hiersip_local_registrations"] + float64(count)
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := n.metrics(ctx)
		if err == nil && m["hiersip_local_registrations"] >= want {
			return st.Sent - st.OK, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return len(missing), fmt.Errorf("bench: %s holds %.0f registrations, want %.0f", n.name, m["hiersip_local_registrations"], want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *runner) register(ctx context.Context) error {
	cl, err := r.startCluster(ctx, "register", clusterOpts{domains: 1, perDomain: 3, members: 1})
	if err != nil {
		return err
	}
	defer cl.Close()
	n := cl.member("pastry", 0)
	var procs []meteredProc
	procs = append(procs, nodeProc(n, "registrar"))
	for _, o := range cl.nodes["pastry"] {
		if o != n {
			procs = append(procs, nodeProc(o, "other node of the domain"))
		}
	}
	lad := &RegisterLadder{Bound: r.cfg.RegBound}
	r.rep.Summary.Register = lad
	broken := false
	var texts []string
	for _, rate := range r.cfg.RegRates {
		if err := waitQuiet(ctx, procs); err != nil {
			return err
		}
		count := max(int(float64(rate)*r.cfg.RegStepDuration.Seconds()), 1)
		s0 := snapshot(procCPU, time.Now(), procs)
		st, _, err := openLoopRegister(ctx, n.sip, "pastry", fmt.Sprintf("r%d-", rate), count, rate, r.cfg.RegBound)
		if err != nil {
			return err
		}
		st.CPUUS = costs(procs, s0, snapshot(procCPU, time.Now(), procs), st.Sent)
		lad.Steps = append(lad.Steps, st)
		r.log.Info("bench: register step", "step", st.String())
		if st.passed() && !broken {
			lad.Sustained = rate
		}
		cpu := make([]string, len(st.CPUUS))
		for i, c := range st.CPUUS {
			cpu[i] = fmt.Sprintf("%s %s", c.Name, num(c.PerCallUS))
		}
		texts = append(texts, st.String()+"; CPU µs/REGISTER "+strings.Join(cpu, ", "))
		if !st.passed() {
			broken = true
			break
		}
	}
	r.add(SectionRegister, nameRegRate, "regs/s", fmt.Sprintf("open loop: a Go sender offers first REGISTERs of new AORs (digest off, each its own contact) at a fixed rate for %v per step, whatever the answers, no retransmission, to a member node of a 3-node domain (each node its own process); a step passes when every REGISTER got its 200 OK within %v; rates %s; steps: %s",
		r.cfg.RegStepDuration, r.cfg.RegBound, joinInts(r.cfg.RegRates), strings.Join(texts, "; ")), []float64{float64(lad.Sustained)})
	for _, st := range lad.Steps {
		if len(st.CPUUS) > 0 {
			r.add(SectionRegister, fmt.Sprintf("CPU/REGISTER at the registrar at %d/s", st.Rate), "µs", "utime+stime of the registrar's process over the step ÷ REGISTERs sent; the other two nodes (DHT replicas): "+fmt.Sprintf("%s, %s µs", num(st.CPUUS[1].PerCallUS), num(st.CPUUS[min(2, len(st.CPUUS)-1)].PerCallUS)), []float64{st.CPUUS[0].PerCallUS})
		}
	}
	return r.registerToCall(ctx, cl, n)
}

// registerToCall measures REGISTER's 200 OK → a call to the AOR through another node
// of the domain (another process) reaches the registered contact.
func (r *runner) registerToCall(ctx context.Context, cl *cluster, reg *procNode) error {
	uas, err := r.startSippUAS(SectionRegister, nameRegToCall)
	if uas == nil {
		return err
	}
	defer uas.Close()
	var from *procNode
	for _, o := range cl.nodes["pastry"] {
		if o != reg {
			from = o
			break
		}
	}
	c, err := newSIPClient()
	if err != nil {
		return err
	}
	defer c.Close()
	runs := 20
	if r.cfg.Quick {
		runs = 5
	}
	var samples, tries []float64
	for i := range runs {
		aor := fmt.Sprintf("sip:probe%d-%s@pastry", i, randHex(3))
		res, err := c.register(ctx, mustUDP(reg.sip), "sip:pastry", aor, "sip:service@"+uas.addr, randHex(10), 1, 3600, 5*time.Second)
		if err != nil {
			return err
		}
		if res.StatusCode != 200 {
			return fmt.Errorf("register %s: %d", aor, res.StatusCode)
		}
		t0 := time.Now()
		deadline := t0.Add(10 * time.Second)
		for k := 1; ; k++ {
			_, err := c.call(ctx, mustUDP(from.sip), aor, 2*time.Second)
			if err == nil {
				samples = append(samples, us(time.Since(t0)))
				tries = append(tries, float64(k))
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("call to %s after its REGISTER: %w", aor, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	r.add(SectionRegister, nameRegToCall, "µs", "after the REGISTER's 200 OK at one node, the Go UAC calls the AOR through another node (another process) until a call gets its 200 OK (one call setup, ~1–2 ms, included)", samples)
	r.add(SectionRegister, "calls needed until the AOR answered", "calls", "1 = the binding was already found when the 200 OK left", tries)
	return nil
}

func (r *runner) footprint(ctx context.Context) error {
	cl, err := r.startCluster(ctx, "footprint", clusterOpts{domains: 1, perDomain: 3, members: 1})
	if err != nil {
		return err
	}
	defer cl.Close()
	n := cl.member("pastry", 0)
	measure := func(label string) error {
		// Let the node settle: wait until RSS changes by < 1 % over 200 ms (at most 3 s).
		prev := rssKB(n.pid())
		for range 15 {
			time.Sleep(200 * time.Millisecond)
			cur := rssKB(n.pid())
			if abs(cur-prev)*100 < prev {
				break
			}
			prev = cur
		}
		m, err := n.metrics(ctx)
		if err != nil {
			return err
		}
		r.add(SectionFootprint, "RSS "+label, "MB", "VmRSS of the node's process (/proc/<pid>/status), a member of a domain of 3 node processes", []float64{float64(rssKB(n.pid())) / 1024})
		r.add(SectionFootprint, "goroutines "+label, "", "go_goroutines of its /metrics", []float64{m["go_goroutines"]})
		r.add(SectionFootprint, "Go heap in use "+label, "MB", "go_memstats_heap_inuse_bytes of its /metrics", []float64{m["go_memstats_heap_inuse_bytes"] / (1 << 20)})
		return nil
	}
	if err := measure("idle node"); err != nil {
		return err
	}
	if _, err := fillRegistrations(ctx, n, "f", r.cfg.Registrations, r.cfg.RegFillRate); err != nil {
		return err
	}
	return measure(fmt.Sprintf("node with %d registrations", r.cfg.Registrations))
}

// startSippUAS starts a sipp uas in a work folder of its own for the measure name of
// section; without sipp it records the measure as skipped and returns nil, nil.
func (r *runner) startSippUAS(section, name string) (*sippUAS, error) {
	if r.sipp == "" {
		r.skip(section, name, "sipp missing (apt-get install sip-tester)")
		return nil, nil
	}
	dir, err := r.workdir("sipp")
	if err != nil {
		return nil, err
	}
	return startUAS(r.sipp, dir)
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func (r *runner) failover(ctx context.Context) error {
	uas, err := r.startSippUAS(SectionFailover, nameFailover)
	if uas == nil {
		return err
	}
	defer uas.Close()
	nodesPer := 2 + r.cfg.FailoverRuns
	cl, err := r.startCluster(ctx, "failover", clusterOpts{domains: 2, perDomain: nodesPer, members: 1})
	if err != nil {
		return err
	}
	defer cl.Close()
	c, err := newSIPClient()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := registerOK(ctx, c, cl.member("can", 0).sip, "sip:can", "sip:service@can", "sip:service@"+uas.addr); err != nil {
		return err
	}
	from := cl.member("pastry", 0).sip
	var samples, attempts []float64
	for range r.cfg.FailoverRuns {
		if _, _, err := callUntilOK(ctx, c, from, "sip:service@can", 30*time.Second); err != nil {
			return fmt.Errorf("before kill: %w", err)
		}
		px, err := cl.proxy(ctx, "can")
		if err != nil {
			return err
		}
		t0 := time.Now()
		px.kill()
		_, k, err := callUntilOK(ctx, c, from, "sip:service@can", 60*time.Second)
		if err != nil {
			return fmt.Errorf("after kill: %w", err)
		}
		samples = append(samples, float64(time.Since(t0).Microseconds())/1000)
		attempts = append(attempts, float64(k))
	}
	r.add(SectionFailover, nameFailover, "ms", fmt.Sprintf("the callee domain's proxy process killed (SIGKILL: no handoff; %d nodes per domain, each its own process); Go UAC retries inter-domain calls (2 s timeout each, 10 ms apart) until one gets 200 OK; time from kill to that 200; %d kills", nodesPer, r.cfg.FailoverRuns), samples)
	r.add(SectionFailover, "failover: call attempts until success", "calls", "attempts including the successful one", attempts)
	return nil
}
