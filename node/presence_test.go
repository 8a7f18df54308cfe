package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipua"
)

// waitNotify returns the next NOTIFY of ua whose body contains want.
func waitNotify(t *testing.T, ua *sipua.UA, want string, d time.Duration) sipua.Notify {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	var seen []string
	for {
		select {
		case n := <-ua.Notifies():
			if strings.Contains(string(n.Body), want) {
				return n
			}
			seen = append(seen, n.State+": "+string(n.Body))
		case <-deadline.C:
			t.Fatalf("no NOTIFY with %q; got %q", want, seen)
		}
	}
}

// subscribed subscribes ua to target's presence, until the SUBSCRIBE gets 200.
func subscribed(t *testing.T, ctx context.Context, ua *sipua.UA, target string) {
	t.Helper()
	eventually(t, 45*time.Second, "a subscription to "+target+"'s presence", func() error {
		res, err := ua.Subscribe(ctx, target, "presence", time.Hour)
		if err != nil {
			return err
		}
		if res.StatusCode != 200 {
			return fmt.Errorf("%d %s", res.StatusCode, res.Reason)
		}
		return nil
	})
}

// TestPresenceAcrossNodes: carol (domain ringo) watches alice (domain pastry, her phone at
// another node than the proxies). The SUBSCRIBE reaches alice's presence home and gets
// 200; the NOTIFYs come back through carol's node (record-routed, over the overlay):
// open from alice's registration, then what alice's phone PUBLISHes, then closed when
// she unregisters.
func TestPresenceAcrossNodes(t *testing.T) {
	users := usersLine(t, "alice", "pastry", "alicepw", true)
	ds := startSpecDomains(t,
		domainSpec{name: "pastry", n: 3, users: users},
		carolsRingo(t))
	p := ds["pastry"]
	carolNode := member(ds["ringo"])
	carol := uaAt(t, "sip:carol@ringo", "carolpw", carolNode)
	alice := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-0000000a1ce1>", p[1], sipua.AnswerAuto, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	subscribed(t, ctx, carol, "sip:alice@pastry")
	n := waitNotify(t, carol, "<basic>open</basic>", 20*time.Second)
	if !strings.HasPrefix(n.State, "active") || !strings.Contains(n.ContentType, "pidf") {
		t.Errorf("first NOTIFY: state %q, type %q", n.State, n.ContentType)
	}
	if n.Source != carolNode.Bridge().UDPAddr() {
		t.Errorf("the NOTIFY came from %s, not through carol's node %s", n.Source, carolNode.Bridge().UDPAddr())
	}

	pidf := `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@pastry">
  <tuple id="desk"><status><basic>closed</basic></status><note>in a meeting</note></tuple>
</presence>`
	res, err := alice.Publish(ctx, "presence", "", "application/pidf+xml", []byte(pidf), time.Hour)
	if err != nil || res.StatusCode != 200 || res.GetHeader("SIP-ETag") == nil {
		t.Fatalf("PUBLISH: %v %v", res, err)
	}
	waitNotify(t, carol, "in a meeting", 20*time.Second)

	// The reg package, from the registrar of alice's home node: only alice may watch it,
	// and it shows her device with its public GRUU.
	if res, err := carol.Subscribe(ctx, "sip:alice@pastry", "reg", time.Hour); err == nil && res.StatusCode < 300 {
		t.Errorf("carol subscribed to alice's registrations: %d", res.StatusCode)
	}
	if res, err := alice.Subscribe(ctx, "sip:alice@pastry", "reg", time.Hour); err != nil || res.StatusCode != 200 {
		t.Fatalf("alice's reg SUBSCRIBE: %v %v", res, err)
	}
	reg := waitNotify(t, alice, "reginfo", 20*time.Second)
	if !strings.Contains(string(reg.Body), "gr=urn:uuid:00000000-0000-0000-0000-0000000a1ce1") {
		t.Errorf("reginfo without the device's GRUU: %s", reg.Body)
	}

	// A document of another presentity is refused: carol publishes alice's PIDF as hers.
	if res, err := carol.Publish(ctx, "presence", "", "application/pidf+xml", []byte(pidf), time.Hour); err == nil && res.StatusCode < 300 {
		t.Errorf("carol published alice's document: %d", res.StatusCode)
	}
}

// TestPresenceOfDevicesAtOtherNodes: alice's desk phone is registered at her presence home
// (the serving node with the lowest peer ID), her laptop at another node of her domain.
// The laptop's node publishes its registration at the home, so when the desk phone
// unregisters carol still sees alice open (the laptop's tuple); when the laptop
// unregisters too, closed.
func TestPresenceOfDevicesAtOtherNodes(t *testing.T) {
	users := usersLine(t, "alice", "pastry", "alicepw", true)
	ds := startSpecDomains(t,
		domainSpec{name: "pastry", n: 3, users: users},
		carolsRingo(t))
	p := ds["pastry"]
	home, other := p[1], p[2]
	if other.ID() < home.ID() {
		home, other = other, home
	}
	carol := carolAt(t, ds)
	desk := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-00000000de5c>", home, sipua.AnswerAuto, 0)
	laptop := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-0000001a9709>", other, sipua.AnswerAuto, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	subscribed(t, ctx, carol, "sip:alice@pastry")
	// The laptop's node published it at the home: its tuple (not a "reg-" one).
	waitNotify(t, carol, `<tuple id="d`, 30*time.Second)
	if _, err := desk.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	// Still open: the laptop is registered at the other node.
	quiet := time.NewTimer(3 * time.Second)
	defer quiet.Stop()
	for done := false; !done; {
		select {
		case n := <-carol.Notifies():
			if strings.Contains(string(n.Body), "<basic>closed</basic>") {
				t.Fatalf("alice closed while her laptop is registered: %s", n.Body)
			}
		case <-quiet.C:
			done = true
		}
	}
	if _, err := laptop.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	waitNotify(t, carol, "<basic>closed</basic>", 30*time.Second)
}
