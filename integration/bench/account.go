package bench

import (
	"fmt"
	"time"
)

// CPU accounting. Every process on a call's path is metered on its own from
// /proc/<pid>/stat (utime+stime, all threads): the hiersip nodes each in its own
// process, Kamailio as its main process and children together. A process's CPU per
// call is the CPU time it used during the measured window divided by the calls
// completed in that window. Nothing is subtracted: the idle CPU of each process is
// measured once, before any load, over a window as long as the measured one, and
// reported beside the figures (as the µs per call it would amount to at the
// measured rate), so that the reader sees how much of a figure it could be.

// meteredProc is a process (or a group of processes) whose CPU time is metered.
type meteredProc struct {
	Name string // "pastry-0"
	Role string // "caller's node", "Kamailio", …
	pids func() []int
}

// cpuReader reads a process's utime+stime.
type cpuReader func(pid int) (time.Duration, error)

// cpuSnapshot is the CPU time of each metered process at one instant.
type cpuSnapshot struct {
	at  time.Time
	cpu []time.Duration
}

// snapshot reads every process of procs.
func snapshot(read cpuReader, now time.Time, procs []meteredProc) cpuSnapshot {
	s := cpuSnapshot{at: now, cpu: make([]time.Duration, len(procs))}
	for i, p := range procs {
		for _, pid := range p.pids() {
			if c, err := read(pid); err == nil {
				s.cpu[i] += c
			}
		}
	}
	return s
}

// ProcCost is what one process used during a window.
type ProcCost struct {
	Name string        `json:"name"`
	Role string        `json:"role"`
	CPU  time.Duration `json:"cpu_ns"`
	Wall time.Duration `json:"wall_ns"`
	// PerCallUS is CPU ÷ calls, µs; 0 without calls.
	PerCallUS float64 `json:"per_call_us"`
	// IdleMsPerS is the process's idle CPU rate from the baseline (ms of CPU per s of
	// wall time), IdlePerCallUS what it amounts to per call at the window's call rate;
	// both 0 when no baseline was taken.
	IdleMsPerS    float64 `json:"idle_ms_per_s,omitempty"`
	IdlePerCallUS float64 `json:"idle_per_call_us,omitempty"`
}

// costs returns each process's CPU between snapshots a and b, per call of the calls
// completed in between. A process that exited in between counts 0 (its CPU time went
// with it).
func costs(procs []meteredProc, a, b cpuSnapshot, calls int) []ProcCost {
	wall := b.at.Sub(a.at)
	out := make([]ProcCost, len(procs))
	for i, p := range procs {
		c := ProcCost{Name: p.Name, Role: p.Role, CPU: max(b.cpu[i]-a.cpu[i], 0), Wall: wall}
		if calls > 0 {
			c.PerCallUS = us(c.CPU) / float64(calls)
		}
		out[i] = c
	}
	return out
}

// msPerS is a CPU rate: ms of CPU per s of wall time.
func msPerS(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / 1000 / wall.Seconds()
}

// IdleBaseline is each process's CPU rate without load, measured before any load over
// two consecutive halves of a window; the halves check that the rate is steady.
type IdleBaseline struct {
	Window time.Duration `json:"window_ns"`
	Procs  []IdleProc    `json:"procs"`
}

type IdleProc struct {
	Name string `json:"name"`
	// MsPerS over the whole window, and over its first and second half.
	MsPerS float64 `json:"ms_per_s"`
	First  float64 `json:"first_half"`
	Second float64 `json:"second_half"`
	// Tick is one clock tick (the resolution of /proc's utime and stime) over a half,
	// in ms/s.
	Tick float64 `json:"tick"`
}

// steady reports whether the two halves agree: within 2 ms/s or a factor 2 of each
// other, give or take two clock ticks. A node still settling after its start (DHT
// refresh, election) is not.
func (p IdleProc) steady() bool {
	lo, hi := min(p.First, p.Second), max(p.First, p.Second)
	return hi-lo <= 2+2*p.Tick || hi <= 2*lo+2*p.Tick
}

// newIdleBaseline computes the baseline from snapshots at the window's start, middle
// and end.
func newIdleBaseline(procs []meteredProc, s0, s1, s2 cpuSnapshot) IdleBaseline {
	b := IdleBaseline{Window: s2.at.Sub(s0.at)}
	for i, p := range procs {
		b.Procs = append(b.Procs, IdleProc{
			Name:   p.Name,
			MsPerS: msPerS(s2.cpu[i]-s0.cpu[i], s2.at.Sub(s0.at)),
			First:  msPerS(s1.cpu[i]-s0.cpu[i], s1.at.Sub(s0.at)),
			Second: msPerS(s2.cpu[i]-s1.cpu[i], s2.at.Sub(s1.at)),
			Tick:   msPerS(clockTick, s2.at.Sub(s0.at)/2),
		})
	}
	return b
}

// rate returns the idle rate of the process named name.
func (b *IdleBaseline) rate(name string) (IdleProc, bool) {
	if b == nil {
		return IdleProc{}, false
	}
	for _, p := range b.Procs {
		if p.Name == name {
			return p, true
		}
	}
	return IdleProc{}, false
}

// withIdle fills in the idle columns of cs from b, at calls/s rate.
func withIdle(cs []ProcCost, b *IdleBaseline, rate float64) []ProcCost {
	for i := range cs {
		if p, ok := b.rate(cs[i].Name); ok && rate > 0 {
			cs[i].IdleMsPerS = p.MsPerS
			cs[i].IdlePerCallUS = p.MsPerS * 1000 / rate
		}
	}
	return cs
}

// String renders the baseline of one process.
func (p IdleProc) String() string {
	s := fmt.Sprintf("%s %.1f ms/s (halves %.1f, %.1f)", p.Name, p.MsPerS, p.First, p.Second)
	if !p.steady() {
		s += " NOT STEADY"
	}
	return s
}
