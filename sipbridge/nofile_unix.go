//go:build unix

package sipbridge

import "syscall"

// nofileLimit is the process's soft RLIMIT_NOFILE (0: unknown).
func nofileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return uint64(r.Cur)
}
