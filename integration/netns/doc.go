// Package netns builds throw-away Linux networks for system tests from
// network namespaces, bridges and veth pairs (iproute2), runs processes
// inside them and sets iptables rules in them (e.g. NAT routers).
//
// Every object a test creates is named with a per-test prefix ("hs" + six
// random hex digits + "-") and removed by t.Cleanup; Sweep removes what a
// crashed run left behind. A test network has no link to the machine's real
// network: bridges live in namespaces of their own and veth pairs join only
// the test's namespaces, so nothing is created in the root namespace.
// Processes are stopped before their namespaces are deleted. Their output
// goes to log files that are kept (and their tails logged) when the test
// fails.
//
// It needs root and iproute2 (and iptables for NAT); New skips the test, or
// fails it when CI=true, if they are missing (see package testenv).
//
// # Usage
//
//	n := netns.New(t)
//	lan := n.Bridge("lan")
//	a, b := n.Namespace("a"), n.Namespace("b")
//	lan.Attach(a, "eth0", "10.0.0.1/24")
//	lan.Attach(b, "eth0", "10.0.0.2/24")
//	out := a.MustExec("ping", "-c1", "10.0.0.2")
//	p := b.Start("server", "/path/to/server", "-listen", "10.0.0.2:4001")
//	line, err := p.WaitFor(ctx, func(l string) bool { return strings.HasPrefix(l, "READY") })
//
// A NAT router between a LAN and a test "internet":
//
//	r := n.Namespace("nat")
//	n.Link(r, "wan0", "1.2.0.1/24", inet, "eth1", "1.2.0.254/24")
//	lan.Attach(r, "lan0", "192.168.1.1/24")
//	r.NAT("wan0")
package netns
