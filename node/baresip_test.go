package node

import (
	"context"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/softphone"
)

// TestBaresipAcrossDomains: a real softphone registered in pastry calls a
// hiersip UA in can, and is called from it.
func TestBaresipAcrossDomains(t *testing.T) {
	ds := startCallDomains(t, nil, 3, "pastry", "can")
	home := member(ds["pastry"])
	phone := softphone.StartBaresip(t, softphone.Account{AOR: "sip:carol@bupt.pastry", Node: home.Bridge().UDPAddr()})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	eventually(t, 20*time.Second, "baresip registers", func() error {
		_, err := home.Lookup(ctx, mustAOR(t, "sip:carol@bupt.pastry"))
		return err
	})
	alice := newUA(t, "sip:alice@pku.can", member(ds["can"]))

	// hiersip UA in can → baresip in pastry.
	c := call(t, alice, "sip:carol@bupt.pastry")
	if err := phone.WaitFor(ctx, "Call established"); err != nil {
		t.Fatal(err)
	}
	// baresip's tone reaches alice through the two end nodes' relays (media anchored at
	// both: baresip's SDP names its node's port, and alice's hers).
	mediaFlows(t, 25, c)
	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("BYE to baresip: %v", err)
	}

	// baresip in pastry → hiersip UA in can.
	if err := phone.Command("/dial sip:alice@pku.can"); err != nil {
		t.Fatal(err)
	}
	var in interface {
		Hangup(context.Context) error
	}
	select {
	case call := <-alice.Incoming():
		in = call
	case <-ctx.Done():
		t.Fatal("baresip's call never reached alice")
	}
	eventually(t, 10*time.Second, "the call to be acknowledged", func() error {
		for _, e := range alice.Ladder() {
			if !e.Sent && len(e.First) > 3 && e.First[:3] == "ACK" {
				return nil
			}
		}
		return context.DeadlineExceeded
	})
	if err := in.Hangup(ctx); err != nil {
		t.Fatalf("BYE from alice to baresip: %v", err)
	}
}
