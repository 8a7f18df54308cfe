package sipworld

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/internal/kamcfg"
	"github.com/hiersip/hiersip/integration/testenv"
)

// TestKamailioOnATakenPort: Kamailio given a port another socket holds exits, and its log
// says so in the words startServer looks for before it starts it again on other ports.
func TestKamailioOnATakenPort(t *testing.T) {
	bin := testenv.RequireBinary(t, "kamailio")
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	k, err := startKamailio(bin, kamcfg.ModuleDir(), Domain, "taken."+Domain, l.LocalAddr().String(), t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if k.Running() {
			_ = k.Stop()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := waitUp(ctx, k); err == nil {
		t.Fatal("Kamailio answered on a taken port")
	}
	if !strings.Contains(k.Log(), "already in use") {
		t.Fatalf("Kamailio's log does not say the port is taken:\n%s", k.Log())
	}
}
