// Package demo runs hiersip's demonstration: two domains of nodes on
// loopback in one process, a call between users of the two domains through
// their elected proxies, printed as a ladder diagram like draft Figure 3.
package demo
