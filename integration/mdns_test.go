package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/netns"
	"github.com/hiersip/hiersip/integration/testenv"
)

// buildHelper builds a main package of this module into a temporary
// directory and returns the binary's path.
func buildHelper(t testing.TB, pkg string) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = testenv.RequireBinary(t, "go")
	}
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

type mdnsNode struct {
	proc *netns.Proc
	id   string
}

func startMDNSNode(t *testing.T, ctx context.Context, ns *netns.Namespace, bin, label, ip, domain string) mdnsNode {
	t.Helper()
	p := ns.Start(label, bin, "-listen", "/ip4/"+ip+"/tcp/0", "-domain", domain)
	line, err := p.WaitFor(ctx, func(l string) bool { return strings.HasPrefix(l, "READY ") || strings.HasPrefix(l, "ERROR") })
	if err != nil || !strings.HasPrefix(line, "READY ") {
		t.Fatalf("%s did not start: %q, %v", label, line, err)
	}
	t.Logf("%s: %s", label, line)
	return mdnsNode{proc: p, id: strings.Fields(line)[1]}
}

// waitConnected waits until n reports a connection to peer made by mDNS
// and returns the line.
func waitConnected(t *testing.T, ctx context.Context, n mdnsNode, label string, peer mdnsNode) string {
	t.Helper()
	line, err := n.proc.WaitFor(ctx, func(l string) bool {
		return strings.HasPrefix(l, "CONNECTED "+peer.id+" source=mdns")
	})
	if err != nil {
		t.Fatalf("%s never connected to %s by mDNS: %v", label, peer.id, err)
	}
	return line
}

// TestMDNSDomains: nodes of one domain find each other by mDNS on a LAN;
// nodes of another domain on the same LAN are never found by them.
func TestMDNSDomains(t *testing.T) {
	n := netns.New(t)
	bin := buildHelper(t, "github.com/hiersip/hiersip/integration/internal/mdnsnode")

	lan := n.Bridge("lan")
	ips := map[string]string{"p1": "10.42.0.1", "p2": "10.42.0.2", "c1": "10.42.0.3", "c2": "10.42.0.4"}
	spaces := map[string]*netns.Namespace{}
	for _, name := range []string{"p1", "p2", "c1", "c2"} {
		spaces[name] = n.Namespace(name)
		lan.Attach(spaces[name], "eth0", ips[name]+"/24")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The "can" nodes first, so that they are announcing while the pastry
	// nodes browse.
	c1 := startMDNSNode(t, ctx, spaces["c1"], bin, "can-1", ips["c1"], "can")
	c2 := startMDNSNode(t, ctx, spaces["c2"], bin, "can-2", ips["c2"], "can")
	p1 := startMDNSNode(t, ctx, spaces["p1"], bin, "pastry-1", ips["p1"], "pastry")
	p2 := startMDNSNode(t, ctx, spaces["p2"], bin, "pastry-2", ips["p2"], "pastry")

	t.Logf("pastry-1: %s", waitConnected(t, ctx, p1, "pastry-1", p2))
	t.Logf("pastry-2: %s", waitConnected(t, ctx, p2, "pastry-2", p1))
	// Control: mDNS of domain "can" works on the same LAN at the same time.
	t.Logf("can-1: %s", waitConnected(t, ctx, c1, "can-1", c2))
	t.Logf("can-2: %s", waitConnected(t, ctx, c2, "can-2", c1))
	for _, n := range []mdnsNode{p1, p2} {
		if _, err := n.proc.WaitFor(ctx, func(l string) bool { return strings.HasPrefix(l, "JOINED source=mdns") }); err != nil {
			t.Errorf("pastry node %s did not report JOINED: %v", n.id, err)
		}
	}

	// Stop everything so that the logs are complete, then check that no
	// node ever found or connected to a node of the other domain.
	for _, n := range []mdnsNode{p1, p2, c1, c2} {
		_ = n.proc.Stop()
	}
	check := func(label string, n mdnsNode, foreign ...mdnsNode) {
		for _, l := range n.proc.Lines() {
			if !strings.HasPrefix(l, "FOUND ") && !strings.HasPrefix(l, "CONNECTED ") {
				continue
			}
			for _, f := range foreign {
				if strings.Contains(l, f.id) {
					t.Errorf("%s crossed domains: %s", label, l)
				}
			}
		}
	}
	check("pastry-1", p1, c1, c2)
	check("pastry-2", p2, c1, c2)
	check("can-1", c1, p1, p2)
	check("can-2", c2, p1, p2)
}

// TestMDNSLoopbackOnly: in a namespace with only lo, mDNS works once lo has
// the multicast flag (DESIGN §5).
func TestMDNSLoopbackOnly(t *testing.T) {
	n := netns.New(t)
	bin := buildHelper(t, "github.com/hiersip/hiersip/integration/internal/mdnsnode")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Without the flag, mDNS cannot start; the bootstrapper says so and
	// goes on with its other sources.
	plain := n.Namespace("lo0")
	p := startMDNSNode(t, ctx, plain, bin, "lo0", "127.0.0.1", "pastry")
	if line, err := p.proc.WaitFor(ctx, func(l string) bool { return strings.Contains(l, "mDNS not started") }); err != nil {
		t.Errorf("no warning about mDNS on a loopback-only namespace: %v", err)
	} else {
		t.Logf("lo0: %s", line)
	}

	ns := n.Namespace("lo")
	ns.LoopbackMulticast()
	a := startMDNSNode(t, ctx, ns, bin, "lo-1", "127.0.0.1", "pastry")
	b := startMDNSNode(t, ctx, ns, bin, "lo-2", "127.0.0.1", "pastry")
	t.Logf("lo-1: %s", waitConnected(t, ctx, a, "lo-1", b))
	t.Logf("lo-2: %s", waitConnected(t, ctx, b, "lo-2", a))
}

// TestMDNSTwoOverlaysOneHost: a node runs the mDNS of its domain and of the
// global overlay on one libp2p host (two Bootstrappers, as package node
// does); both services find the other node.
func TestMDNSTwoOverlaysOneHost(t *testing.T) {
	n := netns.New(t)
	bin := buildHelper(t, "github.com/hiersip/hiersip/integration/internal/mdnsnode")
	lan := n.Bridge("lan")
	a, b := n.Namespace("a"), n.Namespace("b")
	lan.Attach(a, "eth0", "10.43.0.1/24")
	lan.Attach(b, "eth0", "10.43.0.2/24")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	na := mdnsNode{proc: a.Start("a", bin, "-listen", "/ip4/10.43.0.1/tcp/0", "-domain", "pastry,global")}
	nb := mdnsNode{proc: b.Start("b", bin, "-listen", "/ip4/10.43.0.2/tcp/0", "-domain", "pastry,global")}
	for _, nd := range []*mdnsNode{&na, &nb} {
		line, err := nd.proc.WaitFor(ctx, func(l string) bool { return strings.HasPrefix(l, "READY ") })
		if err != nil {
			t.Fatal(err)
		}
		nd.id = strings.Fields(line)[1]
	}
	for _, c := range []struct {
		label    string
		self, of mdnsNode
	}{{"a", na, nb}, {"b", nb, na}} {
		for _, domain := range []string{"pastry", "global"} {
			line, err := c.self.proc.WaitFor(ctx, func(l string) bool {
				return strings.HasPrefix(l, "FOUND "+c.of.id+" source=mdns domain="+domain+" ")
			})
			if err != nil {
				t.Errorf("%s: mDNS of %s did not find the other node: %v", c.label, domain, err)
				continue
			}
			t.Logf("%s: %s", c.label, line)
		}
	}
	for _, l := range append(na.proc.Lines(), nb.proc.Lines()...) {
		if strings.Contains(l, "mDNS not started") {
			t.Errorf("a second mDNS service on one host failed: %s", l)
		}
	}
}
