// Command hiersip-bench measures hiersip against sipp alone and a central
// Kamailio (README "Benchmarks"). It is a command of its own so that the
// benchmark driver and its sipp, Kamailio and node-process harness stay out
// of the production binary, hiersip. The logic lives in integration/bench.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newBenchCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hiersip-bench:", err)
		os.Exit(1)
	}
}
