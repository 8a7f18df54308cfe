// Package bench is hiersip's benchmark (issues 9 and 17), run by `hiersip-bench`
// (cmd/hiersip-bench): hiersip measured side by side with sipp alone and a central
// Kamailio, on loopback, in one run.
//
// Every hiersip node runs as users run it: a `hiersip node --config FILE` process of its
// own, built once from ./cmd/hiersip of the module (Config.HiersipPath to give a binary),
// with a configuration file and a data directory in a temporary directory that is kept
// when the run fails. Kamailio (tm, registrar, rr; one worker, -x tlsf -m 1024) and
// sipp's uac and uas (a uas scenario that copies Record-Route, so that ACK and BYE
// follow the dialog's route) are started by the run; it installs nothing and skips,
// saying so, the rows whose tool is missing.
//
// The sections (Config.Sections):
//
//   - latency: INVITE → 200 OK at 100 calls/s through (a) nothing, (b) Kamailio, (c)
//     two nodes of one domain, (d) four nodes of two domains, (e) a fresh cluster; the
//     latency each path adds to (a), per quantile.
//   - cpu: the CPU time of every process (/proc/<pid>/stat: utime+stime), first with
//     no call at all, before any load, over a window as long as a step, then during
//     sipp's uac at 1,000 calls/s along (b), (c) and (d): per call, each process on the
//     path on its own (CPU in the window ÷ calls completed in it; nothing subtracted;
//     the idle rate is shown beside it), with its VmRSS and VmHWM, and for the nodes
//     their allocations per call (/metrics) and, with Config.Profile, CPU and allocation
//     profiles of the window.
//   - throughput: the strict rate ladder 250, 500, 1000, 1500, 2000, 3000, 4000, …;
//     each rate tried twice, a try passing with no failed call and no retransmission.
//   - manyregs: calls along (c) at its strict rate, before and after the callee's node
//     took 10,000 registrations from an open-loop REGISTER generator.
//   - register: an open-loop REGISTER ladder (250, 500, 1000, 2000 /s), and REGISTER's
//     200 OK → a call through another node reaches the AOR.
//   - lookup (in process, on a libp2p mocknet), failover (a proxy process killed),
//     footprint (an idle node, one with registrations) and media (G.711 streams
//     anchored at two nodes).
//
// Run prints every figure with how it was measured, then the summary of issue 17 with
// its targets as ratios to Kamailio measured in the same run, and writes it all as JSON
// (OutDir/bench.json). Results of full runs, with profiles, are in RESULTS.md next to
// this file.
//
// The run trusts what it starts: every process listens on loopback only, and a node's
// admin endpoint (with /debug/pprof/) on a free loopback port, for the length of the run.
package bench
