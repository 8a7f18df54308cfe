package bench

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The machine may be shared (the 2 cores of the development machine run other
// engineers' builds and tests). The run samples, every 5 s and at each section's start
// and end, the busy time of all CPUs (/proc/stat) and the CPU time of its own process
// tree (the bench, its node processes, Kamailio and sipp): the difference is what the
// rest of the machine used meanwhile, reported in cores.

// Machine is the machine's load during the run.
type Machine struct {
	// OthersCores is the CPU the processes outside the bench's tree used on average
	// over the run, in cores; OthersMax the highest over a 5-s interval; OursCores what
	// the bench's tree used.
	OthersCores float64 `json:"others_cores"`
	OthersMax   float64 `json:"others_max_cores"`
	OursCores   float64 `json:"ours_cores"`
	// Sections are the same averages per section.
	Sections []MachineSection `json:"sections"`
	// LoadMax is the highest 1-minute load average sampled.
	LoadMax string `json:"load_max"`
}

// MachineSection is the machine's load during one section.
type MachineSection struct {
	Section     string  `json:"section"`
	OthersCores float64 `json:"others_cores"`
	OursCores   float64 `json:"ours_cores"`
}

type machineSample struct {
	at          time.Time
	busy, ours  time.Duration
	load1       string
	load1Parsed float64
}

func sampleMachine() machineSample {
	s := machineSample{at: time.Now(), load1: loadAvg()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		s.busy, _ = parseMachineCPU(string(b))
	}
	s.ours = treeCPU(allStats(), os.Getpid())
	if f := strings.Fields(s.load1); len(f) > 0 {
		s.load1Parsed, _ = strconv.ParseFloat(f[0], 64)
	}
	return s
}

// cores returns what the others and the bench used between a and b, in cores.
func cores(a, b machineSample) (others, ours float64) {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return 0, 0
	}
	o := (b.busy - a.busy) - (b.ours - a.ours)
	return max(o.Seconds(), 0) / wall, (b.ours - a.ours).Seconds() / wall
}

// machineMeter samples the machine every 5 s until stopped.
type machineMeter struct {
	mu      sync.Mutex
	first   machineSample
	last    machineSample
	maxOth  float64
	maxLoad machineSample
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startMachineMeter() *machineMeter {
	m := &machineMeter{stop: make(chan struct{})}
	m.first = sampleMachine()
	m.last, m.maxLoad = m.first, m.first
	m.wg.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
			m.sample()
		}
	})
	return m
}

func (m *machineMeter) sample() machineSample {
	s := sampleMachine()
	m.mu.Lock()
	defer m.mu.Unlock()
	o, _ := cores(m.last, s)
	m.maxOth = max(m.maxOth, o)
	if s.load1Parsed >= m.maxLoad.load1Parsed {
		m.maxLoad = s
	}
	m.last = s
	return s
}

// done stops the sampling and returns the run's figures.
func (m *machineMeter) done(sections []MachineSection) Machine {
	close(m.stop)
	m.wg.Wait()
	s := m.sample()
	o, u := cores(m.first, s)
	return Machine{OthersCores: o, OthersMax: m.maxOth, OursCores: u, Sections: sections, LoadMax: m.maxLoad.load1}
}
