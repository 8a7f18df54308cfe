package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/softphone"
)

// TestLinphoneAcrossDomains: two real softphones of different makes, linphonec (Debian's
// linphone-cli) registered in pastry and baresip in can, call each other both ways through
// both domains' proxies; each call carries audio both ways through the two end nodes'
// anchors (counted at linphone's node: its tone to the other node, baresip's to it).
func TestLinphoneAcrossDomains(t *testing.T) {
	ds := startCallDomains(t, nil, 3, "pastry", "can")
	lhome, bhome := member(ds["pastry"]), member(ds["can"])
	linda := softphone.StartLinphone(t, softphone.Account{AOR: "sip:linda@bupt.pastry", Node: lhome.Bridge().UDPAddr()},
		softphone.LinphoneOptions{RTPPorts: "42000-42019"})
	carol := softphone.Start(t, softphone.Account{AOR: "sip:carol@pku.can", Node: bhome.Bridge().UDPAddr()},
		softphone.Options{RTPPorts: "42100-42119"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for aor, n := range map[string]*Node{"sip:linda@bupt.pastry": lhome, "sip:carol@pku.can": bhome} {
		eventually(t, 30*time.Second, aor+" registers", func() error {
			_, err := n.Lookup(ctx, mustAOR(t, aor))
			return err
		})
	}
	// audio waits until linphone's node carried at least 100 RTP packets each way in the
	// call (2 s of audio at 20 ms).
	audio := func(what string) {
		t.Helper()
		eventually(t, 30*time.Second, "audio both ways in "+what, func() error {
			for _, m := range lhome.Status().Media {
				if m.ToPeer >= 100 && m.ToPhone >= 100 {
					t.Logf("%s: %d RTP packets linphone → baresip, %d baresip → linphone (path %s)", what, m.ToPeer, m.ToPhone, m.Path)
					return nil
				}
			}
			return fmt.Errorf("media sessions: %+v", lhome.Status().Media)
		})
	}

	// baresip (can) calls linphone (pastry); linphone answers by itself.
	if err := carol.Dial(ctx, "sip:linda@bupt.pastry"); err != nil {
		t.Fatal(err)
	}
	if err := linda.WaitFor(ctx, "Call 1 with sip:carol@pku.can connected"); err != nil {
		t.Fatal(err)
	}
	if err := linda.PlayTone(); err != nil {
		t.Fatal(err)
	}
	audio("the call from baresip")
	if err := carol.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := linda.WaitFor(ctx, "Call 1 with sip:carol@pku.can ended"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the call's media sessions closed", func() error {
		if ms := lhome.Status().Media; len(ms) > 0 {
			return fmt.Errorf("%d sessions", len(ms))
		}
		return nil
	})

	// linphone (pastry) calls baresip (can); baresip answers by itself.
	if err := linda.Command("call sip:carol@pku.can"); err != nil {
		t.Fatal(err)
	}
	if err := carol.WaitFor(ctx, "Call established: sip:linda@bupt.pastry"); err != nil {
		t.Fatal(err)
	}
	if err := linda.WaitFor(ctx, "Call 2 with sip:carol@pku.can connected"); err != nil {
		t.Fatal(err)
	}
	if err := linda.PlayTone(); err != nil {
		t.Fatal(err)
	}
	audio("the call from linphone")
	if err := linda.Command("terminate"); err != nil {
		t.Fatal(err)
	}
	if err := carol.WaitFor(ctx, "terminated", "session closed"); err != nil {
		t.Fatal(err)
	}
}
