package fork

import (
	"bytes"
	"cmp"
	"slices"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/peer"
)

// MaxTargets bounds the branches of one forked request: every local
// device (a node holds at most sip.max_contacts per AOR) and every other
// serving node of the AOR's device set fit.
const MaxTargets = domains.MaxServingNodes + domains.MaxDevicesPerNode

// Contact is a device registered at this node for the AOR: what the
// registrar holds. Its URI never leaves the node.
type Contact struct {
	URI      string    // the device's Contact URI
	Instance string    // RFC 5626 +sip.instance ("<urn:uuid:…>"), "" if none
	RegID    int       // RFC 5626 reg-id, 0 if none
	Q        float64   // the contact's q-value; 0 counts as 1
	Since    time.Time // when it registered at this node (not refreshed)
	Expires  time.Time
	// Asleep: the device registered with RFC 8599 push parameters and has
	// no usable flow; it must be woken (package push) before a request can
	// reach it, within Timer C.
	Asleep bool
}

// Input is what NewPlan decides from: the request's target and this
// node's tables. Lookups happen before (the device set), sends after.
type Input struct {
	AOR  domains.AOR
	Self peer.ID
	// Devices is the AOR's device set from the domain overlay, nil when the
	// lookup found none.
	Devices *domains.DeviceSet
	// Local holds the AOR's contacts registered at this node.
	Local []Contact
	// GRUU is the gr parameter of the Request-URI (RFC 5627 public GRUU:
	// the device's instance ID), "" when the request targets the AOR.
	GRUU string
	// FromPeer is the node that forwarded the request over the overlay, ""
	// when it came from a UA or a proxy resolving the AOR: a request
	// another node forked reaches only this node's own devices (no loops,
	// no double forks).
	FromPeer peer.ID
	Now      time.Time
}

// Target is one branch of the fork: a device of this node (Contact set)
// or another serving node (Node set), which forks to its own devices.
type Target struct {
	Contact  string        // local: the device's Contact URI
	Instance string        // local: its instance ID
	Wake     bool          // local: push first, fork when it re-registers (RFC 8599)
	Node     peer.AddrInfo // remote: the serving node
	Devices  int           // remote: how many of the AOR's devices it serves
	Tag      string        // the device's instance tag (local with an instance; remote with a GRUU)
}

// Local reports whether the target is a device of this node.
func (t Target) Local() bool { return t.Node.ID == "" }

// Plan is the fork NewPlan decides: the targets, in parallel, or, when there
// are none, the status to answer (404 nobody by that name, 480 no live
// device).
type Plan struct {
	Targets []Target
	Status  int
	Reason  string
}

// NewPlan decides where a request for in.AOR forks, in parallel: every live
// local contact (one per instance: the newest registration of a device
// with several flows) and every other node of the device set that serves a
// live device, once each. A device (instance tag) listed by several nodes
// is reached at the node where it registered last (Since): it moved. With a
// GRUU only that device is a target. A request forwarded by another node
// (FromPeer) reaches local devices only. The result is ordered (local by q
// then newest first, nodes by peer ID) and bounded by MaxTargets. NewPlan
// is pure: no I/O, no clock.
func NewPlan(in Input) Plan {
	var grTag string
	if in.GRUU != "" {
		grTag = domains.InstanceTag(in.AOR, in.GRUU)
	}
	// Where each tag registered last, over this node and the set.
	latest := map[string]time.Time{}
	where := map[string]peer.ID{}
	note := func(tag string, since time.Time, p peer.ID) {
		if t, ok := latest[tag]; !ok || since.After(t) || (since.Equal(t) && p == in.Self) {
			latest[tag], where[tag] = since, p
		}
	}
	type local struct {
		c   Contact
		tag string
	}
	var locals []local
	byInstance := map[string]int{}
	for _, c := range in.Local {
		if !in.Now.Before(c.Expires) {
			continue
		}
		l := local{c: c}
		if c.Instance != "" {
			l.tag = domains.InstanceTag(in.AOR, c.Instance)
			if i, ok := byInstance[l.tag]; ok { // two flows of one device: the newest
				if c.Since.After(locals[i].c.Since) {
					locals[i] = l
				}
				continue
			}
			byInstance[l.tag] = len(locals)
			note(l.tag, c.Since, in.Self)
		}
		locals = append(locals, l)
	}
	forked := in.FromPeer != ""
	var remote []domains.DeviceEntry
	if in.Devices != nil && !forked {
		for _, e := range in.Devices.Entries {
			if e.Peer == in.Self || !e.Live(in.Now) {
				continue
			}
			remote = append(remote, e)
			for _, d := range e.Devices {
				if in.Now.Before(d.Expires) {
					note(d.Tag, d.Since, e.Peer)
				}
			}
		}
	}

	var p Plan
	slices.SortStableFunc(locals, func(a, b local) int {
		if c := cmp.Compare(qValue(b.c.Q), qValue(a.c.Q)); c != 0 {
			return c
		}
		return b.c.Since.Compare(a.c.Since)
	})
	for _, l := range locals {
		if l.tag != "" && where[l.tag] != in.Self && !forked {
			continue // the device registered at another node since
		}
		if grTag != "" && l.tag != grTag {
			continue
		}
		p.Targets = append(p.Targets, Target{Contact: l.c.URI, Instance: l.c.Instance, Wake: l.c.Asleep, Tag: l.tag})
	}
	nLocal := len(p.Targets)
	for _, e := range remote {
		n := 0
		for _, d := range e.Devices {
			if !in.Now.Before(d.Expires) || where[d.Tag] != e.Peer {
				continue
			}
			if grTag != "" && d.Tag != grTag {
				continue
			}
			n++
		}
		if n == 0 {
			continue
		}
		t := Target{Node: e.AddrInfo(), Devices: n}
		if grTag != "" {
			t.Tag = grTag
		}
		p.Targets = append(p.Targets, t)
	}
	slices.SortFunc(p.Targets[nLocal:], func(a, b Target) int { return bytes.Compare([]byte(a.Node.ID), []byte(b.Node.ID)) })
	if len(p.Targets) > MaxTargets {
		p.Targets = p.Targets[:MaxTargets]
	}
	if len(p.Targets) == 0 {
		switch {
		case grTag != "":
			p.Status, p.Reason = 480, "Temporarily Unavailable: the device of this GRUU is not registered"
		case in.Devices == nil && len(in.Local) == 0:
			p.Status, p.Reason = 404, "Not Found"
		default:
			p.Status, p.Reason = 480, "Temporarily Unavailable"
		}
	}
	return p
}

// qValue is a contact's q-value, 1 when unset or out of range.
func qValue(q float64) float64 {
	if q <= 0 || q > 1 {
		return 1
	}
	return q
}

// Home returns the node where the AOR's presence lives (package presence:
// its presence agent, where PUBLISH and SUBSCRIBE for the AOR go): the live
// entry of the device set with the lowest peer ID. ok is false when the
// set has no live entry (the AOR is offline: its mailbox takes messages,
// nobody serves its presence).
func Home(set *domains.DeviceSet, now time.Time) (home peer.ID, ok bool) {
	if set == nil {
		return "", false
	}
	for _, e := range set.Entries {
		if e.Live(now) && (!ok || e.Peer < home) {
			home, ok = e.Peer, true
		}
	}
	return home, ok
}
