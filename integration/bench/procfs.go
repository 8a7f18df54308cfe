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

// parseProcStat returns the parent PID and utime+stime of the contents of
// /proc/<pid>/stat. The command name, field 2, is in parentheses and may hold
// spaces and parentheses itself: the fields after it start after the last ')'.
func parseProcStat(stat string) (ppid int, cpu time.Duration, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errProcStat
	}
	// After the command: state(0) ppid(1) pgrp … utime(11) stime(12).
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, 0, errProcStat
	}
	ppid, err1 := strconv.Atoi(f[1])
	u, err2 := strconv.ParseInt(f[11], 10, 64)
	s, err3 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, 0, fmt.Errorf("%w: %w", errProcStat, err)
	}
	return ppid, time.Duration(u+s) * clockTick, nil
}

// procCPU returns utime+stime of process pid (all its threads), from
// /proc/<pid>/stat; 0 and an error once the process is gone.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	_, cpu, err := parseProcStat(string(b))
	return cpu, err
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

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if pp, _, err := parseProcStat(string(st)); err == nil && pp == pid {
			out = append(out, p)
		}
	}
	return out
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
