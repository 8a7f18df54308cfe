// Package demo runs hiersip's demonstration: two domains of nodes on
// loopback in one process, a call between users of the two domains through
// their elected proxies, printed as a ladder diagram like draft Figure 3:
// the SIP messages the nodes exchange (sipbridge.WithTrace) and the lookups
// they make to route the call (node.Config.LookupTrace): the caller's node
// finding its proxy (F1/F2), that proxy resolving sip:overlay@<domain> in
// the global overlay (F5/F6) and the callee domain's proxy looking the
// callee up (F9/F10), numbered F1–F18 as in the figure.
package demo
