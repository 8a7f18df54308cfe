package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipua"
)

// device registers a UA for aor at n as device instance (RFC 5626), answering as mode says.
func device(t testing.TB, aor, password, instance string, n *Node, mode sipua.AnswerMode, ring time.Duration, opts ...sipua.UAOption) *sipua.UA {
	t.Helper()
	user := strings.SplitN(strings.TrimPrefix(aor, "sip:"), "@", 2)[0]
	ua, err := sipua.NewUA(aor, n.Bridge().UDPAddr(), append([]sipua.UAOption{sipua.WithUALogger(quiet), sipua.WithUACredentials(user, password),
		sipua.WithUAInstance(instance), sipua.WithUAAnswer(mode, ring)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if res, err := ua.Register(ctx, time.Hour); err != nil {
		t.Fatalf("REGISTER %s (%s) at %s: %v %v", aor, instance, n.ID().ShortString(), res, err)
	}
	return ua
}

// received counts the requests of method for callID the UA received.
func received(ua *sipua.UA, method, callID string) int {
	k := 0
	for _, e := range ua.Ladder() {
		if !e.Sent && e.CallID == callID && strings.HasPrefix(e.First, method+" ") {
			k++
		}
	}
	return k
}

// rang reports whether the UA got an INVITE of callID and answered 180 or 183.
func rang(ua *sipua.UA, callID string) bool {
	ringing := false
	for _, e := range ua.Ladder() {
		if e.Sent && e.CallID == callID && (strings.HasPrefix(e.First, "SIP/2.0 180") || strings.HasPrefix(e.First, "SIP/2.0 183")) {
			ringing = true
		}
	}
	return received(ua, "INVITE", callID) > 0 && ringing
}

// TestDevicesForkAcrossNodes: alice has two devices at one node of her domain and one at
// another (each REGISTER gets 200, also at the second node); carol in another domain calls
// her: all three ring, the one that answers gets the call, the other two get CANCEL and
// answer 487. A call to a device's GRUU reaches that device only. Three busy devices give
// the caller 486.
func TestDevicesForkAcrossNodes(t *testing.T) {
	users := usersLine(t, "alice", "pastry", "alicepw", true) + usersLine(t, "bob", "pastry", "bobpw", true)
	ds := startSpecDomains(t,
		domainSpec{name: "pastry", n: 3, users: users},
		carolsRingo(t))
	p := ds["pastry"]
	desk := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-00000000d35c>", p[1], sipua.AnswerAuto, 300*time.Millisecond)
	laptop := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-0000001a7709>", p[1], sipua.AnswerRingOnly, 0)
	phone := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-00000000f00e>", p[2], sipua.AnswerRingOnly, 0)
	carol := carolAt(t, ds)
	if phone.GRUU() == "" || !strings.Contains(phone.GRUU(), ";gr=urn:uuid:") {
		t.Fatalf("the 200 to REGISTER gave no public GRUU: %q", phone.GRUU())
	}

	// Wait until the device set lists both nodes' devices (the call reaches every device).
	var c *sipua.Call
	eventually(t, 45*time.Second, "carol's call rings all of alice's devices", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var err error
		c, err = carol.Call(ctx, "sip:alice@pastry")
		if err != nil {
			return err
		}
		if !rang(laptop, c.CallID) || !rang(phone, c.CallID) || !rang(desk, c.CallID) {
			_ = c.Hangup(ctx)
			return fmt.Errorf("not every device rang: desk %v laptop %v phone %v", rang(desk, c.CallID), rang(laptop, c.CallID), rang(phone, c.CallID))
		}
		return nil
	})
	eventually(t, 10*time.Second, "the devices that did not answer are cancelled", func() error {
		for name, ua := range map[string]*sipua.UA{"laptop": laptop, "phone": phone} {
			if received(ua, "CANCEL", c.CallID) == 0 {
				return fmt.Errorf("%s got no CANCEL", name)
			}
		}
		return nil
	})
	if received(desk, "CANCEL", c.CallID) != 0 {
		t.Error("the device that answered was cancelled")
	}
	// The media of the call flow between carol and the device that answered (anchored at
	// both end nodes), not to the others.
	var callee *sipua.Call
	for callee == nil || callee.CallID != c.CallID {
		callee = answered(t, desk)
	}
	mediaFlows(t, 25, c, callee)
	eventually(t, 10*time.Second, "the answering device gets the ACK", func() error {
		if got := received(desk, "ACK", c.CallID); got != 1 {
			return fmt.Errorf("%d ACKs", got)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Hangup(ctx); err != nil {
		t.Errorf("BYE: %v", err)
	}
	if received(desk, "BYE", c.CallID) != 1 {
		t.Error("the answering device got no BYE")
	}

	// A call to the phone's GRUU rings the phone only; carol gives up after it rings.
	gctx, gcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := carol.Call(gctx, phone.GRUU())
		done <- err
	}()
	var gruuCall string
	eventually(t, 20*time.Second, "the GRUU call rings the phone", func() error {
		for _, e := range phone.Ladder() {
			if !e.Sent && strings.HasPrefix(e.First, "INVITE ") && e.CallID != c.CallID {
				gruuCall = e.CallID
				return nil
			}
		}
		return errors.New("no INVITE at the phone")
	})
	if received(desk, "INVITE", gruuCall)+received(laptop, "INVITE", gruuCall) != 0 {
		t.Error("a call to the phone's GRUU reached another device")
	}
	gcancel()
	if err := <-done; err == nil {
		t.Error("the GRUU call was answered by a device that only rings")
	}

	// Busy everywhere: 486.
	var bobs []*sipua.UA
	for i, n := range []*Node{p[1], p[1], p[2]} {
		bobs = append(bobs, device(t, "sip:bob@pastry", "bobpw", fmt.Sprintf("<urn:uuid:00000000-0000-0000-0000-0000000b0b0%d>", i), n, sipua.AnswerBusy, 0))
	}
	eventually(t, 45*time.Second, "bob busy on all three devices gives 486", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		bc, err := carol.Call(ctx, "sip:bob@pastry")
		var cf *sipua.ErrCallFailed
		if !errors.As(err, &cf) {
			return fmt.Errorf("call: %v", err)
		}
		for i, ua := range bobs {
			if received(ua, "INVITE", bc.CallID) == 0 {
				return fmt.Errorf("bob's device %d was not called (%d)", i, cf.Response.StatusCode)
			}
		}
		if cf.Response.StatusCode != 486 {
			return fmt.Errorf("status %d %s", cf.Response.StatusCode, cf.Response.Reason)
		}
		return nil
	})
}

// BenchmarkForkedCallSetup: call setup (INVITE to ACK sent) to a user with 1, 3 and 10
// devices spread over two nodes of her domain, the caller at a third node: every device
// rings, the first answers, the others are cancelled.
func BenchmarkForkedCallSetup(b *testing.B) {
	for _, n := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			users := usersLine(b, "alice", "pastry", "alicepw", true) + usersLine(b, "bob", "pastry", "bobpw", true)
			p := startSpecDomains(b, domainSpec{name: "pastry", n: 3, users: users})["pastry"]
			for i := range n {
				mode, at := sipua.AnswerRingOnly, p[1+i%2]
				if i == 0 {
					mode = sipua.AnswerAuto
				}
				device(b, "sip:alice@pastry", "alicepw", fmt.Sprintf("<urn:uuid:00000000-0000-0000-0000-0000000000%02d>", i), at, mode, 0)
			}
			bob := uaAt(b, "sip:bob@pastry", "bobpw", p[0])
			ctx := context.Background()
			// A first call opens the connections and fills the caches.
			eventually(b, 30*time.Second, "the first call", func() error {
				c, err := bob.Call(ctx, "sip:alice@pastry")
				if err != nil {
					return err
				}
				return c.Hangup(ctx)
			})
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				c, err := bob.Call(ctx, "sip:alice@pastry")
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				if err := c.Hangup(ctx); err != nil {
					b.Fatal(err)
				}
			}
			reportLatency(b, lat)
		})
	}
}
