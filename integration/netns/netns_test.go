package netns_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/netns"
	"github.com/hiersip/hiersip/integration/testenv"
)

// The test binary doubles as a tiny TCP server and client inside the
// namespaces: HIERSIP_NETNS_HELPER="listen ADDR" or "dial ADDR".
func TestMain(m *testing.M) {
	if mode := os.Getenv("HIERSIP_NETNS_HELPER"); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

func helper(mode string) int {
	verb, addr, _ := strings.Cut(mode, " ")
	switch verb {
	case "listen":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		fmt.Println("LISTENING", l.Addr())
		for {
			c, err := l.Accept()
			if err != nil {
				return 1
			}
			fmt.Println("ACCEPT", c.RemoteAddr())
			_, _ = c.Write([]byte("hello\n"))
			_ = c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		fmt.Println("GOT", strings.TrimSpace(line))
		return 0
	}
	return 2
}

func self(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// listen starts the TCP helper in ns on addr and waits until it listens.
func listen(t *testing.T, ns *netns.Namespace, label, addr string) *netns.Proc {
	t.Helper()
	p := ns.Start(label, "env", "HIERSIP_NETNS_HELPER=listen "+addr, self(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.WaitFor(ctx, func(l string) bool { return strings.HasPrefix(l, "LISTENING") }); err != nil {
		t.Fatal(err)
	}
	return p
}

func dial(ns *netns.Namespace, addr string) (string, error) {
	return ns.Exec("env", "HIERSIP_NETNS_HELPER=dial "+addr, os.Args[0])
}

func namespacesWith(t *testing.T, prefix string) []string {
	out, err := exec.Command(testenv.RequireBinary(t, "ip"), "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var got []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, prefix) {
			got = append(got, l)
		}
	}
	return got
}

func TestBridgeAndCleanup(t *testing.T) {
	testenv.RequireNetns(t)
	var prefix string
	t.Run("net", func(t *testing.T) {
		n := netns.New(t)
		prefix = n.Prefix()
		lan := n.Bridge("lan")
		a, b := n.Namespace("a"), n.Namespace("b")
		lan.Attach(a, "eth0", "10.99.0.1/24")
		lan.Attach(b, "eth0", "10.99.0.2/24")

		// No route out: the namespaces are not linked to the real network.
		if out := a.IP("route", "show"); strings.Contains(out, "default") {
			t.Errorf("namespace has a default route: %s", out)
		}
		if ping := testenv.LookBinary("ping"); ping != "" {
			a.MustExec(ping, "-c", "1", "-W", "2", "10.99.0.2")
		}
		listen(t, b, "server", "10.99.0.2:7000")
		out, err := dial(a, "10.99.0.2:7000")
		if err != nil || !strings.Contains(out, "GOT hello") {
			t.Fatalf("dial across the bridge: %q, %v", out, err)
		}
		if got := namespacesWith(t, prefix); len(got) != 3 {
			t.Errorf("namespaces %v, want 3", got)
		}
	})
	if left := namespacesWith(t, prefix); len(left) > 0 {
		t.Errorf("namespaces left after cleanup: %v", left)
	}
	out, err := exec.Command(testenv.RequireBinary(t, "ip"), "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), prefix) {
		t.Errorf("links left after cleanup:\n%s", out)
	}
}

// TestNAT: a LAN client reaches a server on the test internet through a
// NAT router, which the server sees as the client; the router drops
// unsolicited connections from the internet.
func TestNAT(t *testing.T) {
	testenv.RequireBinary(t, "iptables")
	n := netns.New(t)
	lan := n.Bridge("lan")
	client, router, server := n.Namespace("client"), n.Namespace("router"), n.Namespace("server")
	lan.Attach(client, "eth0", "192.168.1.2/24")
	lan.Attach(router, "lan0", "192.168.1.1/24")
	n.Link(router, "wan0", "1.2.0.1/24", server, "eth0", "1.2.0.2/24")
	client.AddRoute("default", "192.168.1.1")
	router.NAT("wan0")

	srv := listen(t, server, "server", "1.2.0.2:7000")
	out, err := dial(client, "1.2.0.2:7000")
	if err != nil || !strings.Contains(out, "GOT hello") {
		t.Fatalf("dial through NAT: %q, %v", out, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := srv.WaitFor(ctx, func(l string) bool { return strings.HasPrefix(l, "ACCEPT 1.2.0.1:") }); err != nil {
		t.Errorf("server did not see the router's address: %v; lines %q", err, srv.Lines())
	}

	listen(t, router, "router-server", "0.0.0.0:7001")
	if out, err := dial(server, "1.2.0.1:7001"); err == nil {
		t.Errorf("unsolicited inbound connection to the router got through: %q", out)
	}
}

func TestSweepRefusesBroadPrefix(t *testing.T) {
	for _, p := range []string{"", "h", "hs", "x-foo"} {
		if err := netns.Sweep(p); err == nil {
			t.Errorf("Sweep(%q) accepted", p)
		}
	}
}
