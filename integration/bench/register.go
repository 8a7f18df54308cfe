package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// regEnv is a two-node domain in one helper process and a third node, in a
// process of its own, that joins it: the node under test.
type regEnv struct {
	domain, single *nodes
}

func (r *runner) startRegEnv(ctx context.Context) (*regEnv, error) {
	d, err := startNodes(ctx, "-domains", "1", "-nodes", "2", "-members", "1")
	if err != nil {
		return nil, err
	}
	s, err := startNodes(ctx, "-domains", "1", "-nodes", "1", "-members", "1", "-join", d.info.Domains["pastry"].P2P[0])
	if err != nil {
		d.Close()
		return nil, err
	}
	return &regEnv{domain: d, single: s}, nil
}

func (e *regEnv) Close() {
	e.single.Close()
	e.domain.Close()
}

// regLoad registers n AORs at addr with `window` REGISTERs outstanding for
// dur (at least one pass over the AORs); every AOR's later REGISTERs are
// refreshes (same Call-ID, next CSeq). It returns the per-REGISTER
// latencies, the number of failures and the elapsed time.
func regLoad(ctx context.Context, addr, prefix string, n, window int, dur time.Duration) ([]float64, int, time.Duration, error) {
	c, err := newSIPClient()
	if err != nil {
		return nil, 0, 0, err
	}
	defer c.Close()
	dst := mustUDP(addr)
	var next atomic.Int64
	var failed atomic.Int64
	var mu sync.Mutex
	var lat []float64
	cseq := make([]atomic.Int64, n)
	callIDs := make([]string, n)
	for i := range callIDs {
		callIDs[i] = randHex(10) + "@reg"
	}
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for range window {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if (i >= n && time.Now().After(end)) || ctx.Err() != nil {
					return
				}
				u := i % n
				aor := fmt.Sprintf("sip:%s%d@pastry", prefix, u)
				t0 := time.Now()
				res, err := c.register(ctx, dst, "sip:pastry", aor, fmt.Sprintf("sip:%s%d@127.0.0.1:9", prefix, u), callIDs[u], int(cseq[u].Add(1)), 3600, 5*time.Second)
				if err != nil || res.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				mu.Lock()
				lat = append(lat, us(time.Since(t0)))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, int(failed.Load()), time.Since(start), nil
}

func (r *runner) register(ctx context.Context) error {
	e, err := r.startRegEnv(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	addr := e.single.addr("pastry", 0)
	dur := 10 * time.Second
	if r.cfg.Quick {
		dur = 2 * time.Second
	}
	const window = 32
	lat, failed, elapsed, err := regLoad(ctx, addr, "u", r.cfg.Registrations, window, dur)
	if err != nil {
		return err
	}
	m := fmt.Sprintf("Go UAC, %d REGISTERs outstanding, %d AORs registered then refreshed for %v, at a node in its own process (domain of 3 nodes, 2 processes)", window, r.cfg.Registrations, dur)
	if failed > 0 {
		m += fmt.Sprintf("; %d FAILED (no 200 OK within 5 s)", failed)
	}
	r.add(SectionRegister, "REGISTER rate (200 OK/s)", "regs/s", m, []float64{float64(len(lat)) / elapsed.Seconds()})
	r.add(SectionRegister, "REGISTER → 200 OK under that load", "µs", m, lat)

	// REGISTER's 200 OK → the AOR resolves at another node (other process).
	c, err := newSIPClient()
	if err != nil {
		return err
	}
	defer c.Close()
	var samples []float64
	var tries []float64
	runs := 20
	if r.cfg.Quick {
		runs = 5
	}
	for i := range runs {
		aor := fmt.Sprintf("sip:probe%d-%s@pastry", i, randHex(3))
		res, err := c.register(ctx, mustUDP(addr), "sip:pastry", aor, "sip:p@127.0.0.1:9", randHex(10), 1, 3600, 5*time.Second)
		if err != nil {
			return err
		}
		if res.StatusCode != 200 {
			return fmt.Errorf("register %s: %d", aor, res.StatusCode)
		}
		t0 := time.Now()
		reply, err := e.domain.do(ctx, "resolve", "pastry", "0", aor)
		if err != nil {
			return err
		}
		samples = append(samples, us(time.Since(t0)))
		n, _ := strconv.Atoi(strings.TrimSpace(reply))
		tries = append(tries, float64(n))
	}
	r.add(SectionRegister, "REGISTER 200 OK → AOR resolves at another node", "µs",
		"after the 200 OK the bench asks a node in another process to Lookup until found (includes ~0.1 ms pipe round trip)", samples)
	r.add(SectionRegister, "lookups needed until resolved", "lookups", "1 = the binding was already stored when the 200 OK left", tries)
	return nil
}

func (r *runner) footprint(ctx context.Context) error {
	e, err := r.startRegEnv(ctx)
	if err != nil {
		return err
	}
	defer e.Close()
	pid := e.single.pid()
	measure := func(label string) error {
		// Let the node settle: wait until RSS changes by < 1 % over 200 ms (at most 3 s).
		prev := rssKB(pid)
		for range 15 {
			time.Sleep(200 * time.Millisecond)
			cur := rssKB(pid)
			if abs(cur-prev)*100 < prev {
				break
			}
			prev = cur
		}
		st, err := e.single.do(ctx, "stats")
		if err != nil {
			return err
		}
		var gor, heap int64
		fmt.Sscan(st, &gor, &heap)
		name := "RSS " + label
		r.add(SectionFootprint, name, "MB", "VmRSS of a process running exactly one node (/proc/<pid>/status), its domain's other 2 nodes in another process", []float64{float64(rssKB(pid)) / 1024})
		r.add(SectionFootprint, "goroutines "+label, "", "runtime.NumGoroutine in that process", []float64{float64(gor)})
		r.add(SectionFootprint, "Go heap in use "+label, "MB", "runtime.MemStats.HeapInuse", []float64{float64(heap) / (1 << 20)})
		return nil
	}
	if err := measure("idle node"); err != nil {
		return err
	}
	_, failed, _, err := regLoad(ctx, e.single.addr("pastry", 0), "f", r.cfg.Registrations, 32, 0)
	if err != nil {
		return err
	}
	if failed > 0 {
		return errors.New("footprint: registrations failed")
	}
	return measure(fmt.Sprintf("node with %d registrations", r.cfg.Registrations))
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func (r *runner) failover(ctx context.Context) error {
	if r.sipp == "" {
		r.skip(SectionFailover, nameFailover, "sipp missing (apt-get install sip-tester)")
		return nil
	}
	dir, err := r.workdir("sipp")
	if err != nil {
		return err
	}
	uas, err := startUAS(r.sipp, dir)
	if err != nil {
		return err
	}
	defer uas.Close()
	nodesPer := 2 + r.cfg.FailoverRuns
	n, err := startNodes(ctx, "-domains", "2", "-nodes", strconv.Itoa(nodesPer), "-members", "1")
	if err != nil {
		return err
	}
	defer n.Close()
	c, err := newSIPClient()
	if err != nil {
		return err
	}
	defer c.Close()
	past, can := n.info.Domains["pastry"], n.info.Domains["can"]
	if err := registerOK(ctx, c, n.addr("can", can.Members[0]), "sip:can", "sip:service@can", "sip:service@"+uas.addr); err != nil {
		return err
	}
	from := n.addr("pastry", past.Members[0])
	var samples, attempts []float64
	for range r.cfg.FailoverRuns {
		if _, _, err := callUntilOK(ctx, c, from, "sip:service@can", 30*time.Second); err != nil {
			return fmt.Errorf("before kill: %w", err)
		}
		t0 := time.Now()
		if _, err := n.do(ctx, "kill", "can"); err != nil {
			return err
		}
		_, k, err := callUntilOK(ctx, c, from, "sip:service@can", 60*time.Second)
		if err != nil {
			return fmt.Errorf("after kill: %w", err)
		}
		samples = append(samples, float64(time.Since(t0).Microseconds())/1000)
		attempts = append(attempts, float64(k))
	}
	r.add(SectionFailover, nameFailover, "ms", fmt.Sprintf("callee domain's proxy closed without handoff (of %d nodes); Go UAC retries inter-domain calls (2 s timeout each, 10 ms apart) until one gets 200 OK; time from kill to that 200; %d kills", nodesPer, r.cfg.FailoverRuns), samples)
	r.add(SectionFailover, "failover: call attempts until success", "calls", "attempts including the successful one", attempts)
	return nil
}
