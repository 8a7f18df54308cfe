// Command hiersip runs a hiersip node (hiersip node) and talks to one: its
// status (hiersip status), SIP calls and messages through it (hiersip call,
// answer, message), a connection reset (hiersip disconnect); it runs a
// self-contained demonstration (hiersip demo), a benchmark against sipp and
// Kamailio (hiersip bench), and a domain authority's enrollment tasks
// (hiersip authority).
// The logic lives in the packages node, node/demo and sipbridge; this
// command only parses flags and prints.
package main
