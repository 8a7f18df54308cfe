// Command hiersip-bench measures hiersip against sipp alone and a central
// Kamailio (README "Benchmarks"). It is a command of its own so that the
// benchmark driver, its sipp and Kamailio harness and its node helper stay
// out of the production binary, hiersip. The logic lives in
// integration/bench.
package main

import (
	"fmt"
	"os"

	"github.com/hiersip/hiersip/integration/bench"
)

func main() {
	// The benchmark runs its nodes in a child process, a re-execution of
	// this binary: that child never gets past this line.
	bench.MaybeRunHelper()
	if err := newBenchCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hiersip-bench:", err)
		os.Exit(1)
	}
}
