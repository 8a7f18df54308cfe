package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/netns"
)

// TestCallNodeOnAnotherHost: hiersip call, answer and message work against a
// node on another machine (--node host:port), two network namespaces on a
// bridge: the user agents bind the address their route to the node leaves
// from, not loopback. The node, listening beyond loopback without a users
// file, warns at start.
func TestCallNodeOnAnotherHost(t *testing.T) {
	bin := buildBinary(t)
	n := netns.New(t)
	lan := n.Bridge("lan")
	nodeNS, phoneNS := n.Namespace("node"), n.Namespace("phone")
	lan.Attach(nodeNS, "eth0", "10.77.0.1/24")
	lan.Attach(phoneNS, "eth0", "10.77.0.2/24")
	const sip = "10.77.0.1:5060"

	nd := nodeNS.Start("node", bin, "node", "--domain", "test", "--data-dir", t.TempDir(),
		"--listen-addrs", "/ip4/10.77.0.1/tcp/0", "--bootstrap-mdns=false", "--global-mdns=false",
		"--sip-udp", sip, "--sip-tcp", "", "--sip-trusted-networks", "10.77.0.0/24", "--admin-listen", "127.0.0.1:8080")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := nd.WaitFor(ctx, func(l string) bool { return strings.Contains(l, `msg="node started"`) }); err != nil {
		t.Fatal(err)
	}
	if _, err := nd.WaitFor(ctx, func(l string) bool {
		return strings.Contains(l, "level=WARN") && strings.Contains(l, "without a users file") && strings.Contains(l, sip)
	}); err != nil {
		t.Errorf("no warning about SIP beyond loopback without a users file: %v", err)
	}
	// alice answers from the phone machine too.
	alice := phoneNS.Start("alice", bin, "answer", "--node", sip, "--as", "sip:alice@test")
	if _, err := alice.WaitFor(ctx, func(l string) bool {
		return strings.HasPrefix(l, "registered sip:alice@test at "+sip+" from 10.77.0.2:")
	}); err != nil {
		t.Fatal(err)
	}
	out, err := phoneNS.Command(ctx, bin, "call", "--node", sip, "--as", "sip:bob@test", "--duration", "200ms", "sip:alice@test").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "registered sip:bob@test at "+sip+" from 10.77.0.2:") ||
		!strings.Contains(string(out), "final response: 200 OK") || !strings.Contains(string(out), "hung up") {
		t.Fatalf("hiersip call --node %s from another host: %v\n%s", sip, err, out)
	}
	out, err = phoneNS.Command(ctx, bin, "message", "--node", sip, "--as", "sip:bob@test", "sip:alice@test", "across the LAN").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "final response: 200") {
		t.Fatalf("hiersip message --node %s: %v\n%s", sip, err, out)
	}
	if _, err := alice.WaitFor(ctx, func(l string) bool { return strings.Contains(l, "across the LAN") }); err != nil {
		t.Fatal(err)
	}
}
