// Command hiersip runs a hiersip node (hiersip node; --check validates its
// configuration) and talks to one: its identity (hiersip id), its status
// (hiersip status), its users file (hiersip users), SIP calls and messages
// through it (hiersip call, answer, message), a connection reset (hiersip
// disconnect); it runs a self-contained demonstration (hiersip demo) and a
// domain authority's enrollment tasks (hiersip authority). The benchmark
// against sipp and Kamailio is a command of its own, cmd/hiersip-bench.
// The logic lives in the packages node, node/demo and sipbridge; this
// command parses flags, finds the node (client.go) and prints.
package main
