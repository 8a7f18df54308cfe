// Package bench is hiersip's benchmark (issue 9), run by `hiersip-bench` (cmd/hiersip-bench):
// call setup latency and strict throughput through sipp alone, a central
// Kamailio and hiersip (same domain, two domains warm and cold), CPU time per
// call of each proxy process, registrations per second, lookup scaling with
// the size of a domain, proxy failover, and the footprint of a node.
//
// Run prints one table, each figure as median and p95 with a sentence on
// how it was measured, evaluates the targets of issue 9 and writes the
// report as JSON (OutDir/bench.json). It needs sipp (Debian sip-tester) and
// Kamailio (Debian kamailio), installs nothing, and skips, saying so, the
// rows whose tool is missing.
//
// The hiersip nodes run in a child process, a re-execution of the running
// binary, so that their CPU time and memory can be read from /proc apart
// from the load generator: every main package (and TestMain) that calls Run
// must call MaybeRunHelper first. The lookup-scaling section runs in
// process, on a libp2p mocknet. Results of a full run, with a CPU profile
// analysis, are in RESULTS.md next to this file.
package bench
