package softphone

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/hiersip/hiersip/integration/testenv"
)

// TestStartOnATakenPort: a port baresip is given that another socket took in the
// meantime is recognised (baresip then exits without an error status), so that Start
// can try other ports instead of leaving a phone that never registers.
func TestStartOnATakenPort(t *testing.T) {
	bin := testenv.RequireBinary(t, "baresip")
	p := freeSIPPort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := Options{RTPPorts: "44000-44009", RegInt: 60, Transport: "udp"}
	o.Command, o.Dial = defaultCommand, net.Dial
	_, err = start(t, bin, Account{AOR: "sip:x@pastry", Node: "127.0.0.1:9"}, o, l.Addr().String())
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("start on a taken port: %v, want %v", err, errPortTaken)
	}

	b := Start(t, Account{AOR: "sip:x@pastry", Node: "127.0.0.1:9"}, Options{RTPPorts: "44000-44009"})
	if out := b.Output(); !strings.Contains(out, "baresip is ready.") {
		t.Fatalf("Start returned before baresip was ready:\n%s", out)
	}
}
