package sipbridge

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/libp2p/go-libp2p"
)

// TestNewBusyPort: a bridge whose UDP or TCP port is taken fails with an error naming
// the address, never panics, and leaves nothing open: not the other listener, not the
// host's stream handler of a bridge already running on it.
func TestNewBusyPort(t *testing.T) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	loc := &memLocator{dir: newMemDir(), domain: "pastry", h: h}

	busyUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyUDP.Close()
	busyTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyTCP.Close()
	// A free TCP port for the UDP case, and a free UDP port for the TCP case.
	freeTCP, freeUDP := freePort(t, "tcp"), freePort(t, "udp")

	for _, tc := range []struct {
		name, udp, tcp, want string
	}{
		{"udp", busyUDP.LocalAddr().String(), freeTCP, "listen udp " + busyUDP.LocalAddr().String()},
		{"tcp", freeUDP, busyTCP.Addr().String(), "listen tcp " + busyTCP.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(h, loc, WithUDP(tc.udp), WithTCP(tc.tcp), WithLogger(testLogger(t)))
			if err == nil {
				_ = b.Close()
				t.Fatal("New on a busy port succeeded")
			}
			if b != nil {
				t.Fatalf("New returned a bridge with its error %v", err)
			}
			if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q (address in use)", err, tc.want)
			}
			// What New opened before failing is closed again: both ports can be bound.
			for _, a := range []struct{ net, addr string }{{"udp", tc.udp}, {"tcp", tc.tcp}} {
				if a.addr == busyUDP.LocalAddr().String() || a.addr == busyTCP.Addr().String() {
					continue
				}
				if err := bindOnce(a.net, a.addr); err != nil {
					t.Errorf("after the failed New, %s %s stays bound: %v", a.net, a.addr, err)
				}
			}
		})
	}

	// A second bridge failing on a host that already runs one leaves the first's
	// stream handler in place.
	first, err := New(h, loc, WithListen("127.0.0.1:0"), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := New(h, loc, WithUDP(first.UDPAddr()), WithTCP(""), WithLogger(testLogger(t))); err == nil {
		t.Fatal("second bridge on the first's UDP port succeeded")
	}
	found := false
	for _, p := range h.Mux().Protocols() {
		found = found || p == ProtocolID
	}
	if !found {
		t.Fatal("the failed bridge removed the running bridge's stream handler")
	}
}

func freePort(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func bindOnce(network, addr string) error {
	if network == "udp" {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		return pc.Close()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}
