package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// path is one way a call takes from the UAC to sipp's uas.
type path struct {
	label  string // "(a) direct" …
	target string // where the UAC sends
	ruri   string // Request-URI host part (rdomain)
	cpu    func() time.Duration
	nodes  int    // proxies (hiersip nodes, or 1 Kamailio) the call crosses
	helper *nodes // the hiersip helper process, for hiersip paths
}

// env is what the call sections share: sipp's uas and the proxies.
type env struct {
	uas   *sippUAS
	kam   *kamailio
	nodes *nodes
	paths map[string]path
}

func (r *runner) workdir(name string) (string, error) {
	d := filepath.Join(r.dir, name)
	return d, os.MkdirAll(d, 0o755)
}

// setup starts sipp's uas, Kamailio (if installed) and the hiersip helper
// with two domains, and registers the uas at each.
func (r *runner) setup(ctx context.Context) (*env, func(), error) {
	e := &env{paths: map[string]path{}}
	closeAll := func() {
		if e.nodes != nil {
			e.nodes.Close()
		}
		if e.kam != nil {
			e.kam.Close()
		}
		if e.uas != nil {
			e.uas.Close()
		}
	}
	dir, err := r.workdir("sipp")
	if err != nil {
		return nil, nil, err
	}
	e.uas, err = startUAS(r.sipp, dir)
	if err != nil {
		return nil, nil, err
	}
	e.paths["a"] = path{label: "(a) direct", target: e.uas.addr, ruri: e.uas.addr}
	c, err := newSIPClient()
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	defer c.Close()
	uasContact := "sip:service@" + e.uas.addr
	if r.kamailio != "" {
		kdir, err := r.workdir("kamailio")
		if err == nil {
			e.kam, err = startKamailio(ctx, r.kamailio, kdir)
		}
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		if err := registerOK(ctx, c, e.kam.addr, "sip:127.0.0.1", "sip:service@127.0.0.1", uasContact); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("register at kamailio: %w", err)
		}
		e.paths["b"] = path{label: "(b) Kamailio", target: e.kam.addr, ruri: e.kam.addr, nodes: 1,
			cpu: func() time.Duration { return cpuTime(e.kam.pids()...) }}
	}
	e.nodes, err = startNodes(ctx, "-domains", "2", "-nodes", "3", "-members", "2")
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	r.log.Info("bench: nodes up", "startup", e.nodes.info.Startup)
	past, can := e.nodes.info.Domains["pastry"], e.nodes.info.Domains["can"]
	if err := registerOK(ctx, c, e.nodes.addr("pastry", past.Members[1]), "sip:pastry", "sip:service@pastry", uasContact); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("register at pastry: %w", err)
	}
	if err := registerOK(ctx, c, e.nodes.addr("can", can.Members[1]), "sip:can", "sip:service@can", uasContact); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("register at can: %w", err)
	}
	pid := e.nodes.pid()
	cpu := func() time.Duration { return cpuTime(pid) }
	from := e.nodes.addr("pastry", past.Members[0])
	e.paths["c"] = path{label: "(c) hiersip same domain", target: from, ruri: "pastry", cpu: cpu, nodes: 2, helper: e.nodes}
	e.paths["d"] = path{label: "(d) hiersip 2 domains", target: from, ruri: "can", cpu: cpu, nodes: 4, helper: e.nodes}
	return e, closeAll, nil
}

// registerOK registers aor → contact at the registrar at addr, retrying
// while the overlay converges (up to 20 s).
func registerOK(ctx context.Context, c *sipClient, addr, regURI, aor, contact string) error {
	deadline := time.Now().Add(20 * time.Second)
	callID := randHex(10) + "@reg"
	for cseq := 1; ; cseq++ {
		res, err := c.register(ctx, mustUDP(addr), regURI, aor, contact, callID, cseq, 3600, 3*time.Second)
		if err == nil && res.StatusCode == 200 {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("%d %s", res.StatusCode, res.Reason)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// callUntilOK places calls until one succeeds or timeout passes; it
// returns the successful call's setup time and the number of attempts.
func callUntilOK(ctx context.Context, c *sipClient, target, ruri string, timeout time.Duration) (time.Duration, int, error) {
	deadline := time.Now().Add(timeout)
	for n := 1; ; n++ {
		d, err := c.call(ctx, mustUDP(target), ruri, 2*time.Second)
		if err == nil {
			return d, n, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, n, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const latencyMethod = "Go UAC (raw UDP, monotonic clock, µs) → … → sipp uas; INVITE sent → 200 OK received; %d runs × %d sequential calls after 5 warm-up calls"

func (r *runner) latency(ctx context.Context) error {
	if r.sipp == "" {
		for _, n := range []string{nameLatA, nameLatB, nameLatC, nameLatD, nameLatE} {
			r.skip(SectionLatency, n, "sipp missing (apt-get install sip-tester)")
		}
		return nil
	}
	e, closeAll, err := r.setup(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	c, err := newSIPClient()
	if err != nil {
		return err
	}
	defer c.Close()
	method := fmt.Sprintf(latencyMethod, r.cfg.Runs, r.cfg.Calls)
	names := map[string]string{"a": nameLatA, "b": nameLatB, "c": nameLatC, "d": nameLatD}
	var errs []error
	for _, k := range []string{"a", "b", "c", "d"} {
		p, ok := e.paths[k]
		if !ok {
			r.skip(SectionLatency, names[k], "kamailio missing (apt-get install kamailio)")
			continue
		}
		ruri := "sip:service@" + p.ruri
		if _, _, err := callUntilOK(ctx, c, p.target, ruri, 20*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.label, err))
			continue
		}
		for range 4 {
			_, _ = c.call(ctx, mustUDP(p.target), ruri, 2*time.Second)
		}
		var samples []float64
		var failed int
		for range r.cfg.Runs {
			for range r.cfg.Calls {
				d, err := c.call(ctx, mustUDP(p.target), ruri, 2*time.Second)
				if err != nil {
					failed++
					continue
				}
				samples = append(samples, us(d))
			}
		}
		m := method
		if failed > 0 {
			m += fmt.Sprintf("; %d calls FAILED", failed)
		}
		r.add(SectionLatency, names[k], "µs", m, samples)
	}
	if err := r.cold(ctx, e); err != nil {
		errs = append(errs, err)
	}
	r.latencyRatios()
	return errors.Join(errs...)
}

// latencyRatios adds the headline ratios: latency added by hiersip over the
// latency added by Kamailio (each path's median minus the direct median),
// and the ratios of the whole setup times.
func (r *runner) latencyRatios() {
	a, okA := r.rep.Get(nameLatA)
	b, okB := r.rep.Get(nameLatB)
	if !okA || !okB || b.Median <= a.Median {
		return
	}
	for _, x := range []struct{ k, name string }{{"c", nameLatC}, {"d", nameLatD}} {
		f, ok := r.rep.Get(x.name)
		if !ok {
			continue
		}
		r.add(SectionLatency, "added latency ratio ("+x.k+")/(b)", "×", fmt.Sprintf("(median (%s) − median (a)) ÷ (median (b) − median (a)) = %.0f µs ÷ %.0f µs", x.k, f.Median-a.Median, b.Median-a.Median),
			[]float64{(f.Median - a.Median) / (b.Median - a.Median)})
		r.add(SectionLatency, "setup ratio ("+x.k+")/(b)", "×", fmt.Sprintf("median (%s) ÷ median (b)", x.k), []float64{f.Median / b.Median})
	}
}

// cold measures the first inter-domain call after fresh nodes start: no
// cached proxy lookups, fresh libp2p connections.
func (r *runner) cold(ctx context.Context, e *env) error {
	var samples []float64
	c, err := newSIPClient()
	if err != nil {
		return err
	}
	defer c.Close()
	for range r.cfg.ColdRuns {
		n, err := startNodes(ctx, "-domains", "2", "-nodes", "3", "-members", "2")
		if err != nil {
			return err
		}
		past, can := n.info.Domains["pastry"], n.info.Domains["can"]
		err = registerOK(ctx, c, n.addr("can", can.Members[1]), "sip:can", "sip:service@can", "sip:service@"+e.uas.addr)
		if err == nil {
			var d time.Duration
			d, err = c.call(ctx, mustUDP(n.addr("pastry", past.Members[0])), "sip:service@can", 5*time.Second)
			samples = append(samples, us(d))
		}
		n.Close()
		if err != nil {
			return fmt.Errorf("cold call: %w", err)
		}
	}
	r.add(SectionLatency, nameLatE, "µs", fmt.Sprintf("first call after a fresh helper process elected its proxies and the callee registered; %d fresh node sets, Go UAC as above", r.cfg.ColdRuns), samples)
	return nil
}

func (r *runner) throughput(ctx context.Context) error {
	if r.sipp == "" {
		r.skip(SectionThroughput, "all", "sipp missing (apt-get install sip-tester)")
		return nil
	}
	e, closeAll, err := r.setup(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	dir, err := r.workdir("sipp")
	if err != nil {
		return err
	}
	var errs []error
	maxRate := map[string]int{}
	// The proxies first; then sipp alone, from the highest rate a proxy
	// reached, to show whether the load generator limits that figure.
	for _, k := range []string{"b", "c", "d", "a"} {
		p, ok := e.paths[k]
		if !ok {
			r.skip(SectionThroughput, nameMaxB, "kamailio missing (apt-get install kamailio)")
			r.skip(SectionThroughput, nameCPUB, "kamailio missing (apt-get install kamailio)")
			continue
		}
		rates := r.cfg.Rates
		if k == "a" {
			top := 0
			for _, v := range maxRate {
				top = max(top, v)
			}
			rates = slices.DeleteFunc(slices.Clone(rates), func(v int) bool { return v < top })
		}
		best, bestRes, idle, steps, err := r.stepRates(ctx, dir, p, rates)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.label, err))
		}
		maxRate[k] = best
		name := "max strict rate " + p.label
		r.add(SectionThroughput, name, "calls/s", fmt.Sprintf("sipp uac (built-in uac flow, strict: unexpected message = failed call) → … → sipp uas, UDP; after warm-up calls, rates stepped %s for %v each; a rate that has a failed call or a retransmission (the run is cut when it happens) is tried once more, then the search stops; highest clean rate; steps %s",
			joinInts(rates), r.cfg.StepDuration, joinStr(steps)), []float64{float64(best)})
		if p.cpu == nil {
			continue
		}
		clean, err := r.cpuPerCall(ctx, dir, k, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s CPU: %w", p.label, err))
		}
		if !clean && bestRes != nil {
			// The CPU figure at CPURate counts the work of failing calls
			// too: add the cost at the highest clean rate.
			r.addCPU(k, p, *bestRes, idle, fmt.Sprintf("CPU/call %s at %d calls/s (highest clean step)", p.label, bestRes.Rate), "")
		}
	}
	if b := maxRate["b"]; b > 0 {
		for _, k := range []string{"c", "d"} {
			r.add(SectionThroughput, "max rate ratio "+k+"/b", "×", "hiersip path max strict rate / Kamailio's", []float64{float64(maxRate[k]) / float64(b)})
		}
	}
	if kc, ok := r.rep.Get(nameCPUB); ok && kc.Median > 0 {
		for _, k := range []string{"c", "d"} {
			if hc, ok := r.rep.Get(fmt.Sprintf("CPU/call/node hiersip (%s)", k)); ok {
				r.add(SectionThroughput, "CPU/call ratio "+k+"/b", "×", fmt.Sprintf("hiersip CPU per call per node (%s) / Kamailio's CPU per call, both at %d calls/s", k, r.cfg.CPURate), []float64{hc.Median / kc.Median})
			}
		}
	}
	return errors.Join(errs...)
}

// stepRates runs sipp at each rate until one is not clean and returns the
// highest clean rate.
// The proxy's CPU time is sampled in every step; it returns the result of
// the highest clean step and the idle CPU rate measured before stepping.
func (r *runner) stepRates(ctx context.Context, dir string, p path, rates []int) (best int, bestRes *sippResult, idle time.Duration, steps []string, err error) {
	if err := r.warmUp(ctx, p); err != nil {
		return 0, nil, 0, nil, err
	}
	if err := waitQuiet(ctx, p); err != nil {
		return 0, nil, 0, nil, err
	}
	idle = idleCPU(ctx, p)
	for _, rate := range rates {
		var res sippResult
		for try := 1; try <= stepTries; try++ {
			var err error
			res, err = runSippUAC(ctx, r.sipp, dir, p.target, p.ruri, rate, r.cfg.StepDuration, p.cpu, true)
			if err != nil {
				return best, bestRes, idle, steps, err
			}
			st := fmt.Sprintf("%d: %d ok, %d failed, %d retrans", rate, res.Successful, res.Failed, res.Retrans)
			if res.Aborted {
				st += fmt.Sprintf(", cut after %.1f s", res.Elapsed.Seconds())
			}
			steps = append(steps, st)
			r.log.Info("bench: step", "path", p.label, "rate", rate, "try", try, "ok", res.Successful, "calls", res.Calls, "failed", res.Failed, "retrans", res.Retrans, "aborted", res.Aborted)
			if res.clean() {
				break
			}
			if err := waitQuiet(ctx, p); err != nil {
				return best, bestRes, idle, steps, err
			}
		}
		if !res.clean() {
			break
		}
		best, bestRes = rate, &res
		if err := waitQuiet(ctx, p); err != nil {
			return best, bestRes, idle, steps, err
		}
	}
	return best, bestRes, idle, steps, nil
}

// stepTries is how many times a rate is tried before the search stops: on a
// shared machine one stall of half a second makes sipp retransmit.
const stepTries = 2

// warmUp places calls along p until one succeeds, and four more, so that a
// step does not begin with lookups and connections (the cold case is its
// own figure).
func (r *runner) warmUp(ctx context.Context, p path) error {
	c, err := newSIPClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ruri := "sip:service@" + p.ruri
	if _, _, err := callUntilOK(ctx, c, p.target, ruri, 20*time.Second); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for range 4 {
		_, _ = c.call(ctx, mustUDP(p.target), ruri, 2*time.Second)
	}
	return nil
}

// cpuPerCall runs sipp at CPURate for a full step and records the proxy
// processes' CPU time per successful call, net of their idle CPU. It
// reports whether the run was clean.
func (r *runner) cpuPerCall(ctx context.Context, dir, k string, p path) (bool, error) {
	if err := waitQuiet(ctx, p); err != nil {
		return false, err
	}
	idle := idleCPU(ctx, p)
	if r.cfg.Profile && p.nodes > 1 {
		if _, err := p.helper.do(ctx, "profstart", filepath.Join(r.dir, "hiersip-"+k+".pprof")); err != nil {
			return false, err
		}
		defer func() { _, _ = p.helper.do(ctx, "profstop") }()
	}
	res, err := runSippUAC(ctx, r.sipp, dir, p.target, p.ruri, r.cfg.CPURate, r.cfg.StepDuration, p.cpu, false)
	if err != nil {
		return false, err
	}
	cname := "CPU/call " + p.label
	if k == "b" {
		cname = nameCPUB
	}
	if k == "c" {
		cname = nameCPUC
	}
	note := "a clean run"
	if !res.clean() {
		note = fmt.Sprintf("NOT clean: %d failed, %d retransmissions", res.Failed, res.Retrans)
	}
	r.addCPU(k, p, res, idle, cname, note)
	return res.clean(), nil
}

// addCPU records the CPU time per successful call of run res.
func (r *runner) addCPU(k string, p path, res sippResult, idle time.Duration, cname, note string) {
	if res.Successful == 0 {
		r.skip(SectionThroughput, cname, fmt.Sprintf("no call succeeded at %d calls/s", res.Rate))
		return
	}
	idleDur := time.Duration(float64(idle) * res.Elapsed.Seconds())
	busy := res.ProxyCPU - idleDur
	if busy <= 0 {
		r.skip(SectionThroughput, cname, fmt.Sprintf("CPU during the run (%v) not above idle (%v over %v): too few calls succeeded (%d)",
			res.ProxyCPU, idleDur, res.Elapsed.Round(time.Millisecond), res.Successful))
		return
	}
	per := us(busy) / float64(res.Successful)
	who := "utime+stime of all Kamailio processes (/proc/<pid>/stat)"
	if p.nodes > 1 {
		who = "utime+stime of the helper process running all 6 nodes (/proc/<pid>/stat)"
	}
	if note == "" {
		note = "a clean run"
	}
	r.add(SectionThroughput, cname, "µs", fmt.Sprintf("%s during %v of sipp at %d calls/s (%d calls ok, %s), minus idle CPU (%.1f ms/s), ÷ calls ok",
		who, res.Elapsed.Round(100*time.Millisecond), res.Rate, res.Successful, note, us(idle)/1000), []float64{per})
	if p.nodes > 1 {
		name := fmt.Sprintf("CPU/call/node hiersip (%s)", k)
		if res.Rate != r.cfg.CPURate {
			name += fmt.Sprintf(" at %d calls/s", res.Rate)
		}
		r.add(SectionThroughput, name, "µs", fmt.Sprintf("the above ÷ the %d nodes the call crosses", p.nodes), []float64{per / float64(p.nodes)})
	}
}

// idleCPU is the proxy's CPU time per second of wall time without load,
// measured over one second.
func idleCPU(ctx context.Context, p path) time.Duration {
	if p.cpu == nil {
		return 0
	}
	c0, t0 := p.cpu(), time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	return time.Duration(float64(p.cpu()-c0) / time.Since(t0).Seconds())
}

// waitQuiet waits until the proxy's CPU stops moving, so that one step's
// stragglers do not bill the next (at most 3 s).
func waitQuiet(ctx context.Context, p path) error {
	if p.cpu == nil {
		return nil
	}
	prev := p.cpu()
	for range 30 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		cur := p.cpu()
		if cur-prev <= 10*time.Millisecond {
			return nil
		}
		prev = cur
	}
	return nil
}

func joinStr(v []string) string {
	out := ""
	for i, s := range v {
		if i > 0 {
			out += "; "
		}
		out += s
	}
	return out
}
