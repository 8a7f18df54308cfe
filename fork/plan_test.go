package fork

import (
	"fmt"
	"testing"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

var (
	t0       = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	alice, _ = domains.ParseAOR("sip:alice@pastry")
)

func newPeer(t testing.TB) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return id
}

// dev is a device of a remote entry registered since t0+since minutes.
func dev(instance string, since int) domains.DeviceRef {
	return domains.DeviceRef{Tag: domains.InstanceTag(alice, instance), Since: t0.Add(time.Duration(since) * time.Minute),
		Expires: t0.Add(time.Hour)}
}

func set(entries ...domains.DeviceEntry) *domains.DeviceSet {
	return &domains.DeviceSet{AOR: alice.String(), Expires: t0.Add(time.Hour), Entries: entries}
}

func ent(p peer.ID, devs ...domains.DeviceRef) domains.DeviceEntry {
	return domains.DeviceEntry{Peer: p, Devices: devs, Expires: t0.Add(time.Hour)}
}

func contact(uri, instance string, since int) Contact {
	return Contact{URI: uri, Instance: instance, Since: t0.Add(time.Duration(since) * time.Minute), Expires: t0.Add(time.Hour)}
}

// describe renders a plan compactly: local contacts by URI, nodes as
// node<i>xN with N devices.
func describe(p Plan, nodes map[peer.ID]string) string {
	if p.Status != 0 {
		return fmt.Sprint(p.Status)
	}
	s := ""
	for _, t := range p.Targets {
		if s != "" {
			s += " "
		}
		switch {
		case t.Local() && t.Wake:
			s += "wake:" + t.Contact
		case t.Local():
			s += t.Contact
		default:
			s += fmt.Sprintf("%sx%d", nodes[t.Node.ID], t.Devices)
		}
	}
	return s
}

func TestNewPlan(t *testing.T) {
	self, n1, n2 := newPeer(t), newPeer(t), newPeer(t)
	names := map[peer.ID]string{n1: "n1", n2: "n2", self: "self"}
	asleep := contact("sip:phone@10.0.0.9", "<urn:uuid:phone>", 5)
	asleep.Asleep = true
	expired := contact("sip:old@10.0.0.1", "", 0)
	expired.Expires = t0
	lowQ := contact("sip:low@10.0.0.4", "", 9)
	lowQ.Q = 0.5
	cases := []struct {
		name string
		in   Input
		want string
	}{
		{"one local device", Input{Local: []Contact{contact("sip:desk@10.0.0.2", "<urn:uuid:desk>", 0)}}, "sip:desk@10.0.0.2"},
		{"two local devices, newest first", Input{Local: []Contact{contact("sip:desk@10.0.0.2", "<urn:uuid:desk>", 0),
			contact("sip:laptop@10.0.0.3", "<urn:uuid:laptop>", 3)}}, "sip:laptop@10.0.0.3 sip:desk@10.0.0.2"},
		{"q-values order the branches", Input{Local: []Contact{lowQ, contact("sip:desk@10.0.0.2", "", 0)}}, "sip:desk@10.0.0.2 sip:low@10.0.0.4"},
		{"two flows of one device (RFC 5626): the newest", Input{Local: []Contact{contact("sip:desk@10.0.0.2;ob", "<urn:uuid:desk>", 0),
			contact("sip:desk@192.0.2.2;ob", "<URN:UUID:DESK>", 2)}}, "sip:desk@192.0.2.2;ob"},
		{"contacts without instance are devices each", Input{Local: []Contact{contact("sip:a@10.0.0.2", "", 0),
			contact("sip:b@10.0.0.3", "", 0)}}, "sip:a@10.0.0.2 sip:b@10.0.0.3"},
		{"a lapsed contact is no target", Input{Local: []Contact{expired}}, "480"},
		{"a sleeping phone is woken", Input{Local: []Contact{asleep}}, "wake:sip:phone@10.0.0.9"},
		{"local and two other nodes", Input{Local: []Contact{contact("sip:desk@10.0.0.2", "<urn:uuid:desk>", 0)},
			Devices: set(ent(self, dev("<urn:uuid:desk>", 0)), ent(n2, dev("<urn:uuid:tab>", 1), dev("<urn:uuid:tv>", 1)),
				ent(n1, dev("<urn:uuid:laptop>", 1)))}, "sip:desk@10.0.0.2 " + sortedNodes(n1, "n1x1", n2, "n2x2")},
		{"a node whose devices lapsed", Input{Devices: set(ent(n1, domains.DeviceRef{Tag: "x", Since: t0, Expires: t0}))}, "480"},
		{"the device moved to another node", Input{Local: []Contact{contact("sip:laptop@10.0.0.3", "<urn:uuid:laptop>", 0)},
			Devices: set(ent(n1, dev("<urn:uuid:laptop>", 10)))}, "n1x1"},
		{"the device moved here", Input{Local: []Contact{contact("sip:laptop@10.0.0.3", "<urn:uuid:laptop>", 10)},
			Devices: set(ent(n1, dev("<urn:uuid:laptop>", 0)))}, "sip:laptop@10.0.0.3"},
		{"a device listed by two nodes goes to the newest", Input{Devices: set(ent(n1, dev("<urn:uuid:tab>", 0), dev("<urn:uuid:tv>", 0)),
			ent(n2, dev("<urn:uuid:tab>", 5)))}, sortedNodes(n1, "n1x1", n2, "n2x1")},
		{"forwarded by another node: local devices only", Input{FromPeer: n1, Local: []Contact{contact("sip:desk@10.0.0.2", "", 0)},
			Devices: set(ent(n1, dev("<urn:uuid:laptop>", 0)), ent(n2, dev("<urn:uuid:tab>", 0)))}, "sip:desk@10.0.0.2"},
		{"forwarded, this node's stale registration still rings", Input{FromPeer: n1, Local: []Contact{contact("sip:laptop@10.0.0.3", "<urn:uuid:laptop>", 0)},
			Devices: set(ent(n1, dev("<urn:uuid:laptop>", 10)))}, "sip:laptop@10.0.0.3"},
		{"GRUU of a local device", Input{GRUU: "urn:uuid:desk", Local: []Contact{contact("sip:desk@10.0.0.2", "<urn:uuid:desk>", 0),
			contact("sip:laptop@10.0.0.3", "<urn:uuid:laptop>", 0)}, Devices: set(ent(n1, dev("<urn:uuid:tab>", 0)))}, "sip:desk@10.0.0.2"},
		{"GRUU of a device at another node", Input{GRUU: "urn:uuid:tab", Local: []Contact{contact("sip:desk@10.0.0.2", "<urn:uuid:desk>", 0)},
			Devices: set(ent(n1, dev("<urn:uuid:tab>", 0), dev("<urn:uuid:tv>", 0)), ent(n2, dev("<urn:uuid:x>", 0)))}, "n1x1"},
		{"GRUU of no registered device", Input{GRUU: "urn:uuid:gone", Local: []Contact{contact("sip:desk@10.0.0.2", "<urn:uuid:desk>", 0)}}, "480"},
		{"nothing known", Input{}, "404"},
		{"a tombstone", Input{Devices: set()}, "480"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.in.AOR, c.in.Self, c.in.Now = alice, self, t0.Add(30*time.Minute)
			if got := describe(NewPlan(c.in), names); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// sortedNodes renders two node targets in peer ID order.
func sortedNodes(a peer.ID, as string, b peer.ID, bs string) string {
	if string(a) < string(b) {
		return as + " " + bs
	}
	return bs + " " + as
}

func TestNewPlanBounded(t *testing.T) {
	self := newPeer(t)
	var local []Contact
	for i := range domains.MaxDevicesPerNode {
		local = append(local, contact(fmt.Sprintf("sip:d%d@10.0.0.%d", i, i), "", i))
	}
	var es []domains.DeviceEntry
	for i := range domains.MaxServingNodes + 4 {
		es = append(es, ent(newPeer(t), dev(fmt.Sprintf("<urn:uuid:%d>", i), 0)))
	}
	p := NewPlan(Input{AOR: alice, Self: self, Local: local, Devices: set(es...), Now: t0})
	if len(p.Targets) != MaxTargets {
		t.Errorf("%d targets, bound %d", len(p.Targets), MaxTargets)
	}
	if !p.Targets[0].Local() || p.Targets[len(p.Targets)-1].Local() {
		t.Error("local devices come first")
	}
}

func TestHome(t *testing.T) {
	a, b, c := newPeer(t), newPeer(t), newPeer(t)
	lapsed := ent(c, domains.DeviceRef{Tag: "x", Expires: t0})
	got, ok := Home(set(ent(a, dev("<urn:uuid:1>", 0)), ent(b, dev("<urn:uuid:2>", 0)), lapsed), t0.Add(time.Minute))
	want := min(a, b)
	if !ok || got != want {
		t.Errorf("home %s, want %s", got, want)
	}
	if _, ok := Home(set(lapsed), t0.Add(time.Minute)); ok {
		t.Error("a home without a live entry")
	}
	if _, ok := Home(nil, t0); ok {
		t.Error("a home without a set")
	}
}
