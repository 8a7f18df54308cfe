package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/softphone"
	"github.com/hiersip/hiersip/sipua"
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
	if err := phone.Dial(ctx, "sip:alice@pku.can"); err != nil {
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

// TestBaresipOneOfSeveralDevices: alice has a real softphone (baresip, which answers) at
// one node of her domain and a hiersip UA that only rings at another; carol in another
// domain calls her: both ring, baresip answers, the other device is cancelled, and the
// call's media flow between carol and baresip.
func TestBaresipOneOfSeveralDevices(t *testing.T) {
	users := usersLine(t, "alice", "pastry", "alicepw", true)
	ds := startSpecDomains(t,
		domainSpec{name: "pastry", n: 3, users: users},
		carolsRingo(t))
	p := ds["pastry"]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// baresip rings until both devices rang: answering at once, it could take the call
	// before the branch to the other node reached the tablet.
	phone := softphone.Start(t, softphone.Account{AOR: "sip:alice@pastry", Password: "alicepw", Node: p[1].Bridge().UDPAddr()},
		softphone.Options{Manual: true})
	eventually(t, 20*time.Second, "baresip registers", func() error {
		_, err := p[1].Lookup(ctx, mustAOR(t, "sip:alice@pastry"))
		return err
	})
	tablet := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-0000007ab1e7>", p[2], sipua.AnswerRingOnly, 0)
	carol := carolAt(t, ds)

	type result struct {
		c   *sipua.Call
		err error
	}
	answered := make(chan result, 1)
	go func() {
		c, err := carol.Call(ctx, "sip:alice@pastry")
		answered <- result{c, err}
	}()
	if err := phone.WaitFor(ctx, "Incoming call"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "carol's call rings the tablet too", func() error {
		for _, e := range tablet.Ladder() {
			if !e.Sent && strings.HasPrefix(e.First, "INVITE ") {
				return nil
			}
		}
		return errors.New("the tablet did not ring")
	})
	if err := phone.Command("/accept"); err != nil {
		t.Fatal(err)
	}
	r := <-answered
	if r.err != nil {
		t.Fatalf("carol's call: %v", r.err)
	}
	c := r.c
	if !rang(tablet, c.CallID) {
		t.Fatal("the tablet did not ring for this call")
	}
	if err := phone.WaitFor(ctx, "Call established"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the tablet is cancelled", func() error {
		if received(tablet, "CANCEL", c.CallID) == 0 {
			return errors.New("no CANCEL at the tablet")
		}
		return nil
	})
	mediaFlows(t, 25, c)
	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("BYE to baresip: %v", err)
	}
}

// TestBaresipPresence: a real softphone (baresip with its presence module) in pastry
// watches alice and dora in can (contacts with presence=p2p). Its SUBSCRIBEs cross both
// domains' proxies; the NOTIFYs come back in the dialogs it made (baresip answers a
// NOTIFY of another dialog 481 and keeps showing "Unknown"). alice, a hiersip UA that
// publishes nothing, shows Online while she is registered, Offline once she unregisters;
// dora, a baresip too, PUBLISHes her status: Offline, then Online, while registered.
func TestBaresipPresence(t *testing.T) {
	ds := startCallDomains(t, nil, 3, "pastry", "can")
	presence := []string{"module_app contact.so", "module_app presence.so"}
	alice := newUA(t, "sip:alice@pku.can", member(ds["can"]))
	dora := softphone.Start(t, softphone.Account{AOR: "sip:dora@pku.can", Node: member(ds["can"]).Bridge().UDPAddr()},
		softphone.Options{Config: presence, AccountParams: ";pubint=600"})
	home := member(ds["pastry"])
	phone := softphone.Start(t, softphone.Account{AOR: "sip:carol@bupt.pastry", Node: home.Bridge().UDPAddr()},
		softphone.Options{Config: presence,
			Contacts: []string{`"Alice" <sip:alice@pku.can>;presence=p2p`, `"Dora" <sip:dora@pku.can>;presence=p2p`}})
	// shows waits until carol's baresip shows who's presence as what; before each look
	// it runs do (a console command is one UDP datagram: it is sent again until it worked).
	shows := func(who, what string, do ...func() error) {
		t.Helper()
		eventually(t, 45*time.Second, "baresip shows "+who+" "+what, func() error {
			for _, f := range do {
				if err := f(); err != nil {
					return err
				}
			}
			out, err := phone.Query("/contacts")
			if err != nil {
				return err
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, who) && strings.Contains(l, what) {
					return nil
				}
			}
			return fmt.Errorf("contacts: %q", out)
		})
	}
	shows("Alice", "Online")
	shows("Dora", "Online")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := alice.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	shows("Alice", "Offline")
	for _, st := range []struct{ cmd, shows string }{{"/presence_offline", "Offline"}, {"/presence_online", "Online"}} {
		shows("Dora", st.shows, func() error { return dora.Command(st.cmd) })
	}
}
