package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes cmd's process receive SIGKILL when the benchmark
// dies, so that no sipp, Kamailio or node helper outlives it.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
