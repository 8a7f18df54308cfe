// Command hiersip runs a hiersip node (hiersip node) and talks to one: its
// status (hiersip status), SIP calls and messages through it (hiersip call,
// answer, message), and a self-contained demonstration (hiersip demo).
// The logic lives in the packages node, node/demo and sipbridge; this
// command only parses flags and prints.
package main
