package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// path is one way a call takes from the UAC to sipp's uas.
type path struct {
	key    string // "a", "b", "c", "d"
	label  string // "(a) direct" …
	target string // where the UAC sends
	ruri   string // Request-URI host part (rdomain)
	// procs are the processes the call crosses, in order (none for (a)); nodes the
	// hiersip nodes among them.
	procs []meteredProc
	nodes []*procNode
}

// env is a set of running processes for calls: sipp's uas, and Kamailio and a cluster
// of two domains of three node processes (one proxy candidate and two members that opt
// out of the election, in each) when asked for. Each section (and in the cpu,
// throughput and manyregs sections each path) gets a fresh one, so that no
// measurement inherits the queues, retransmission timers or heap of an earlier one.
type env struct {
	uas   *sippUAS
	kam   *kamailio
	cl    *cluster
	paths map[string]*path
	// all is every process the env meters: Kamailio and each node.
	all  []meteredProc
	idle *IdleBaseline
	// sippDir receives sipp's scenarios and statistics.
	sippDir string
}

// callMediaPerPeer is media.max_sessions_per_peer of the call paths' nodes: the node's
// whole bound (media.max_sessions, 1,000 by default), since every call of the bench comes
// through one peer (nodeSpec.config).
const callMediaPerPeer = 1000

// envOpts say what an env runs.
type envOpts struct {
	kamailio, nodes bool
	// idleFor, when set, takes the idle baseline of every process, before any call,
	// and records it under that path's key.
	idleFor string
}

// envFor starts the processes path k needs: sipp's uas for (a), and Kamailio for (b),
// the cluster for (c) and (d).
func (r *runner) envFor(ctx context.Context, k string, idle bool) (*env, *path, error) {
	o := envOpts{kamailio: k == "b", nodes: k == "c" || k == "d"}
	if idle {
		o.idleFor = k
	}
	e, err := r.startEnv(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	p, ok := e.paths[k]
	if !ok {
		e.Close()
		return nil, nil, fmt.Errorf("bench: no path (%s)", k)
	}
	return e, p, nil
}

func (r *runner) workdir(name string) (string, error) {
	d := filepath.Join(r.dir, name)
	return d, os.MkdirAll(d, 0o755)
}

func (e *env) Close() {
	if e.cl != nil {
		e.cl.Close()
	}
	if e.kam != nil {
		e.kam.Close()
	}
	if e.uas != nil {
		e.uas.Close()
	}
}

// diag is every node's diag, "; "-separated ("" without nodes).
func (e *env) diag(ctx context.Context) string {
	if e.cl == nil {
		return ""
	}
	var out []string
	for _, n := range e.cl.all() {
		out = append(out, n.diag(ctx))
	}
	return strings.Join(out, "; ")
}

func nodeProc(n *procNode, role string) meteredProc {
	return meteredProc{Name: n.name, Role: role, pids: func() []int { return []int{n.pid()} }}
}

// startEnv starts sipp's uas and what o asks for, and registers the uas at each
// registrar (service@127.0.0.1 at Kamailio, service@pastry and service@can at a member
// of each domain).
func (r *runner) startEnv(ctx context.Context, o envOpts) (e *env, err error) {
	e = &env{paths: map[string]*path{}}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.sippDir, err = r.workdir("sipp"); err != nil {
		return nil, err
	}
	if e.uas, err = startUAS(r.sipp, e.sippDir); err != nil {
		return nil, err
	}
	e.paths["a"] = &path{key: "a", label: "(a) direct", target: e.uas.addr, ruri: e.uas.addr}
	c, err := newSIPClient()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	uasContact := "sip:service@" + e.uas.addr
	if o.kamailio && r.kamailio != "" {
		kdir, err := r.workdir("kamailio")
		if err == nil {
			e.kam, err = startKamailio(ctx, r.kamailio, kdir)
		}
		if err != nil {
			return nil, err
		}
		if err := registerOK(ctx, c, e.kam.addr, "sip:127.0.0.1", "sip:service@127.0.0.1", uasContact); err != nil {
			return nil, fmt.Errorf("register at kamailio: %w", err)
		}
		kp := meteredProc{Name: "kamailio", Role: "Kamailio (all its processes)", pids: e.kam.pids}
		e.paths["b"] = &path{key: "b", label: "(b) Kamailio", target: e.kam.addr, ruri: e.kam.addr, procs: []meteredProc{kp}}
		e.all = append(e.all, kp)
	}
	if o.nodes {
		e.cl, err = r.startCluster(ctx, "calls", clusterOpts{domains: 2, perDomain: 3, members: 2, mediaPerPeer: callMediaPerPeer})
		if err != nil {
			return nil, err
		}
		caller, callee, canCallee := e.cl.member("pastry", 0), e.cl.member("pastry", 1), e.cl.member("can", 1)
		if err := registerOK(ctx, c, callee.sip, "sip:pastry", "sip:service@pastry", uasContact); err != nil {
			return nil, fmt.Errorf("register at pastry: %w", err)
		}
		if err := registerOK(ctx, c, canCallee.sip, "sip:can", "sip:service@can", uasContact); err != nil {
			return nil, fmt.Errorf("register at can: %w", err)
		}
		pp, err := e.cl.proxy(ctx, "pastry")
		if err != nil {
			return nil, err
		}
		cp, err := e.cl.proxy(ctx, "can")
		if err != nil {
			return nil, err
		}
		e.paths["c"] = &path{key: "c", label: "(c) hiersip same domain", target: caller.sip, ruri: "pastry",
			procs: []meteredProc{nodeProc(caller, "caller's node"), nodeProc(callee, "callee's node")},
			nodes: []*procNode{caller, callee}}
		e.paths["d"] = &path{key: "d", label: "(d) hiersip 2 domains", target: caller.sip, ruri: "can",
			procs: []meteredProc{nodeProc(caller, "caller's node"), nodeProc(pp, "caller's proxy"), nodeProc(cp, "callee's proxy"), nodeProc(canCallee, "callee's node")},
			nodes: []*procNode{caller, pp, cp, canCallee}}
		for _, n := range e.cl.all() {
			e.all = append(e.all, nodeProc(n, ""))
		}
	}
	if o.idleFor != "" {
		if err := r.takeIdle(ctx, e, o.idleFor); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// takeIdle measures every process's CPU rate with no call, over CPUDuration, in two
// halves, and reports it under path k.
func (r *runner) takeIdle(ctx context.Context, e *env, k string) error {
	d := r.cfg.CPUDuration
	r.log.Info("bench: idle baseline", "path", k, "window", d)
	var snaps [3]cpuSnapshot
	for i := range snaps {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d / 2):
			}
		}
		snaps[i] = snapshot(procCPU, time.Now(), e.all)
	}
	b := newIdleBaseline(e.all, snaps[0], snaps[1], snaps[2])
	e.idle = &b
	r.rep.Summary.Idle[k] = &b
	for _, p := range b.Procs {
		m := fmt.Sprintf("utime+stime (/proc/<pid>/stat) with no call, over %v after the processes started and the uas registered, before any call; halves %.1f and %.1f ms/s",
			b.Window.Round(100*time.Millisecond), p.First, p.Second)
		if !p.steady() {
			m += " (NOT STEADY: the halves differ by more than 2 ms/s and a factor 2)"
		}
		r.add(SectionCPU, fmt.Sprintf("idle CPU before (%s): %s", k, p.Name), "ms/s", m, []float64{p.MsPerS})
	}
	return nil
}

// waitRecovered waits, before a try, until the env is back at rest after the last one:
// no SIP transaction in flight and no media session at any node, and the processes'
// CPU under 60 ms per 500 ms together, twice in a row (at most 90 s; it says so if
// not). A node that fell behind keeps retransmission timers and queued messages for up
// to 32 s, and the media sessions of calls that failed until their idle timeout (1
// min), which would otherwise bill and break the next try.
func (r *runner) waitRecovered(ctx context.Context, e *env) error {
	deadline := time.Now().Add(90 * time.Second)
	start := time.Now()
	prev := snapshot(procCPU, time.Now(), e.all)
	calm := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		cur := snapshot(procCPU, time.Now(), e.all)
		var d time.Duration
		for i := range cur.cpu {
			d += cur.cpu[i] - prev.cpu[i]
		}
		prev = cur
		quiet := d <= 60*time.Millisecond
		if quiet && e.cl != nil {
			for _, n := range e.cl.all() {
				m, err := n.metrics(ctx)
				if err != nil || m["hiersip_sip_transactions_in_flight"] > 0 || m["hiersip_media_sessions"] > 0 {
					quiet = false
					break
				}
			}
		}
		if quiet {
			calm++
		} else {
			calm = 0
		}
		if calm >= 2 {
			if w := time.Since(start); w > 2*time.Second {
				r.log.Info("bench: recovered", "after", w.Round(100*time.Millisecond))
			}
			return nil
		}
		if time.Now().After(deadline) {
			r.log.Warn("bench: processes not at rest after 90 s; going on", "cpu_last_500ms", d, "nodes", e.diag(ctx))
			return nil
		}
	}
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

// warmUp places calls along p until one succeeds, and four more, so that a
// step does not begin with lookups and connections (the cold case is its
// own figure).
func warmUp(ctx context.Context, p *path) error {
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

// waitQuiet waits until the processes' CPU stops moving (under 10 ms of CPU per
// 100 ms in all), so that one step's stragglers do not bill the next (at most 5 s).
func waitQuiet(ctx context.Context, procs []meteredProc) error {
	if len(procs) == 0 {
		return nil
	}
	prev := snapshot(procCPU, time.Now(), procs)
	for range 50 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		cur := snapshot(procCPU, time.Now(), procs)
		var d time.Duration
		for i := range cur.cpu {
			d += cur.cpu[i] - prev.cpu[i]
		}
		if d <= 10*time.Millisecond {
			return nil
		}
		prev = cur
	}
	return nil
}

// pacedCalls places n calls along p with the Go UAC, one every 1/rate s whatever the
// answers (open loop), and returns the INVITE → 200 OK times of the calls that
// succeeded, and the number that failed.
func pacedCalls(ctx context.Context, p *path, rate, n int) ([]float64, int, error) {
	c, err := newSIPClient()
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	ruri := "sip:service@" + p.ruri
	dst := mustUDP(p.target)
	var (
		mu      sync.Mutex
		samples []float64
		failed  int
		wg      sync.WaitGroup
	)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return nil, 0, ctx.Err()
			case <-time.After(d):
			}
		}
		wg.Go(func() {
			d, err := c.call(ctx, dst, ruri, 5*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			samples = append(samples, us(d))
		})
	}
	wg.Wait()
	return samples, failed, nil
}

const latencyMethod = "Go UAC (raw UDP, monotonic clock, µs) → … → sipp uas; %d calls at %d calls/s (open loop: one started every %v), INVITE sent → 200 OK received, after warm-up calls"

func (r *runner) latency(ctx context.Context) error {
	if r.sipp == "" {
		for _, n := range []string{nameLatA, nameLatB, nameLatC, nameLatD, nameLatE} {
			r.skip(SectionLatency, n, "sipp missing (apt-get install sip-tester)")
		}
		return nil
	}
	e, err := r.startEnv(ctx, envOpts{kamailio: true, nodes: true})
	if err != nil {
		return err
	}
	defer e.Close()
	n := r.cfg.Runs * r.cfg.Calls
	method := fmt.Sprintf(latencyMethod, n, r.cfg.LatencyRate, time.Second/time.Duration(r.cfg.LatencyRate))
	names := map[string]string{"a": nameLatA, "b": nameLatB, "c": nameLatC, "d": nameLatD}
	var errs []error
	for _, k := range []string{"a", "b", "c", "d"} {
		p, ok := e.paths[k]
		if !ok {
			r.skip(SectionLatency, names[k], "kamailio missing (apt-get install kamailio)")
			continue
		}
		if err := warmUp(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.label, err))
			continue
		}
		samples, failed, err := pacedCalls(ctx, p, r.cfg.LatencyRate, n)
		if err != nil {
			return err
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
	r.latencyAdded()
	return errors.Join(errs...)
}

// latencyAdded adds the latency each proxy path adds to the direct one, per quantile
// ((x) − (a) at p50 and at p95), and its ratio to Kamailio's.
func (r *runner) latencyAdded() {
	a, okA := r.rep.Get(nameLatA)
	if !okA {
		return
	}
	b, okB := r.rep.Get(nameLatB)
	for _, x := range []struct{ k, lat, added string }{{"b", nameLatB, nameAddB}, {"c", nameLatC, nameAddC}, {"d", nameLatD, nameAddD}} {
		f, ok := r.rep.Get(x.lat)
		if !ok {
			continue
		}
		add := Figure{Section: SectionLatency, Name: x.added, Unit: "µs", N: 1, Median: f.Median - a.Median, P95: f.P95 - a.P95,
			Method: fmt.Sprintf("(%s) − (a) per quantile: p50 %s − %s, p95 %s − %s", x.k, num(f.Median), num(a.Median), num(f.P95), num(a.P95))}
		r.rep.Figures = append(r.rep.Figures, add)
		if x.k != "b" && okB && b.Median > a.Median && b.P95 > a.P95 {
			r.rep.Figures = append(r.rep.Figures, Figure{Section: SectionLatency, Name: "latency added ratio (" + x.k + ")/(b)", Unit: "×", N: 1,
				Median: add.Median / (b.Median - a.Median), P95: add.P95 / (b.P95 - a.P95),
				Method: "latency added by (" + x.k + ") ÷ latency added by Kamailio, at p50 and at p95"})
		}
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
		cl, err := r.startCluster(ctx, "cold", clusterOpts{domains: 2, perDomain: 3, members: 2, mediaPerPeer: callMediaPerPeer})
		if err != nil {
			return err
		}
		err = registerOK(ctx, c, cl.member("can", 1).sip, "sip:can", "sip:service@can", "sip:service@"+e.uas.addr)
		if err == nil {
			var d time.Duration
			d, err = c.call(ctx, mustUDP(cl.member("pastry", 0).sip), "sip:service@can", 5*time.Second)
			samples = append(samples, us(d))
		}
		cl.Close()
		if err != nil {
			return fmt.Errorf("cold call: %w", err)
		}
	}
	r.add(SectionLatency, nameLatE, "µs", fmt.Sprintf("first call after a fresh set of 6 node processes elected their proxies and the callee registered; %d fresh node sets, Go UAC as above", r.cfg.ColdRuns), samples)
	return nil
}
