package netns_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/netns"
)

// TestDoAndKill: a socket opened with Dial lives in the namespace (it reaches a server on
// the namespace's own loopback, which the test's namespace cannot), the calling thread
// comes back to its namespace, and Kill ends a process at once.
func TestDoAndKill(t *testing.T) {
	n := netns.New(t)
	a := n.Namespace("a")
	p := listen(t, a, "server", "127.0.0.1:4555")
	c, err := a.Dial("tcp", "127.0.0.1:4555")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "hello" {
		t.Fatalf("read from the namespace's server: %q, %v", line, err)
	}
	// Sockets opened afterwards, on any thread, are in the test's namespace again.
	for range 20 {
		pc, err := a.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_ = pc.Close()
	}
	if nc, err := net.DialTimeout("tcp", "127.0.0.1:4555", time.Second); err == nil {
		nc.Close()
		t.Fatal("the test's own namespace reached the namespace's loopback: a thread stayed in the namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("process still running after Kill")
	}
}
