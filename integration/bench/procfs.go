package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100
// on every Linux architecture the benchmark runs on (sysconf(_SC_CLK_TCK)).
const clockTick = time.Second / 100

var errProcStat = errors.New("bench: malformed /proc stat")

// procStat is what the benchmark reads from /proc/<pid>/stat.
type procStat struct {
	ppid int
	// cpu is utime+stime of the process (all its threads); children cutime+cstime of
	// its children that exited and were waited for.
	cpu, children time.Duration
}

// parseProcStat parses the contents of /proc/<pid>/stat. The command name, field 2, is
// in parentheses and may hold spaces and parentheses itself: the fields after it start
// after the last ')'.
func parseProcStat(stat string) (procStat, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return procStat{}, errProcStat
	}
	// After the command: state(0) ppid(1) pgrp … utime(11) stime(12) cutime(13) cstime(14).
	f := strings.Fields(stat[i+1:])
	if len(f) < 15 {
		return procStat{}, errProcStat
	}
	var v [5]int64
	var errs []error
	for k, idx := range []int{1, 11, 12, 13, 14} {
		n, err := strconv.ParseInt(f[idx], 10, 64)
		v[k], errs = n, append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return procStat{}, fmt.Errorf("%w: %w", errProcStat, err)
	}
	return procStat{ppid: int(v[0]), cpu: time.Duration(v[1]+v[2]) * clockTick, children: time.Duration(v[3]+v[4]) * clockTick}, nil
}

// procCPU returns utime+stime of process pid (all its threads), from
// /proc/<pid>/stat; 0 and an error once the process is gone.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	st, err := parseProcStat(string(b))
	return st.cpu, err
}

// cpuTime returns utime+stime of the processes together (those gone count 0).
func cpuTime(pids ...int) time.Duration {
	var t time.Duration
	for _, p := range pids {
		c, _ := procCPU(p)
		t += c
	}
	return t
}

// memInfo is a process's resident memory from /proc/<pid>/status.
type memInfo struct {
	RSSKB int64 // VmRSS: resident now
	HWMKB int64 // VmHWM: the highest VmRSS since the process started
}

// parseProcStatus reads VmRSS and VmHWM (kB) from the contents of
// /proc/<pid>/status.
func parseProcStatus(status string) (memInfo, error) {
	var m memInfo
	var seen int
	for _, l := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return memInfo{}, fmt.Errorf("bench: /proc status: empty %s", k)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return memInfo{}, fmt.Errorf("bench: /proc status %s: %w", k, err)
		}
		if k == "VmRSS" {
			m.RSSKB = n
		} else {
			m.HWMKB = n
		}
		seen++
	}
	if seen < 2 {
		return memInfo{}, errors.New("bench: /proc status without VmRSS and VmHWM")
	}
	return m, nil
}

// procMem returns the resident memory of pid.
func procMem(pid int) (memInfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, err
	}
	return parseProcStatus(string(b))
}

// rssKB returns VmRSS of pid in KiB (0 when it cannot be read).
func rssKB(pid int) int64 {
	m, _ := procMem(pid)
	return m.RSSKB
}

// allStats reads /proc/<pid>/stat of every process.
func allStats() map[int]procStat {
	out := map[int]procStat{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if st, err := parseProcStat(string(b)); err == nil {
			out[p] = st
		}
	}
	return out
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	var out []int
	for p, st := range allStats() {
		if st.ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// treeCPU is the CPU time of process root and all its descendants, living or exited
// and waited for: the benchmark's own share of the machine.
func treeCPU(stats map[int]procStat, root int) time.Duration {
	kids := map[int][]int{}
	for p, st := range stats {
		kids[st.ppid] = append(kids[st.ppid], p)
	}
	var total time.Duration
	var walk func(int, int)
	walk = func(p, depth int) {
		st, ok := stats[p]
		if !ok || depth > 64 {
			return
		}
		total += st.cpu + st.children
		for _, k := range kids[p] {
			walk(k, depth+1)
		}
	}
	walk(root, 0)
	return total
}

// parseMachineCPU returns the busy time of all CPUs together (user, nice, system, irq,
// softirq, steal) from the "cpu " line of /proc/stat.
func parseMachineCPU(stat string) (time.Duration, error) {
	for _, l := range strings.Split(stat, "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		var busy int64
		for _, idx := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
			n, err := strconv.ParseInt(f[idx], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: /proc/stat: %w", err)
			}
			busy += n
		}
		return time.Duration(busy) * clockTick, nil
	}
	return 0, errors.New("bench: /proc/stat without a cpu line")
}

// loadAvg returns the first three fields of /proc/loadavg ("" when unreadable).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
