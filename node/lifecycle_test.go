package node

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
)

// TestNewBusySIPPort: a node whose SIP port is taken (a second node on one
// machine) fails to start with an error naming the setting and the cause; it
// does not panic and leaves its ports free.
func TestNewBusySIPPort(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	n, err := New(context.Background(), Config{
		Domain: "pastry", ListenAddrs: loopback, Logger: quiet,
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
		SIP:       &SIPConfig{UDP: busy.LocalAddr().String(), TCP: "127.0.0.1:0"},
	})
	if err == nil {
		n.Close()
		t.Fatal("New on a busy SIP port succeeded")
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "sip.udp" || !errors.Is(err, syscall.EADDRINUSE) ||
		!strings.Contains(err.Error(), busy.LocalAddr().String()) {
		t.Fatalf("error %q: want a ConfigError of sip.udp naming %s, address in use", err, busy.LocalAddr())
	}
}
