package sipbridge

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/sipua"
)

// devLocator is a memLocator that forks: to the device set set returns (nil: none, so
// the node forks to the AOR's devices registered at itself).
type devLocator struct {
	*memLocator
	set func() *domains.DeviceSet
}

func (l devLocator) LookupDevices(context.Context, domains.AOR) (*domains.DeviceSet, error) {
	if l.set != nil {
		if s := l.set(); s != nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("test: %w", domains.ErrNotFound)
}

// newForkingMediaNode is newMediaNode whose bridge forks to the devices of its users
// (set: as devLocator).
func newForkingMediaNode(t testing.TB, dir *memDir, domain string, set ...func() *domains.DeviceSet) *mediaNode {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := media.New(h, media.WithAddress(netip.MustParseAddr("127.0.0.1")), media.WithPorts(20000, 29999), media.WithLogger(testLogger(t)))
	if err != nil {
		_ = h.Close()
		t.Fatal(err)
	}
	loc := &memLocator{dir: dir, domain: domain, h: h}
	dl := devLocator{memLocator: loc}
	if len(set) > 0 {
		dl.set = set[0]
	}
	b, err := New(h, dl, WithListen("127.0.0.1:0"), WithLogger(testLogger(t)), WithMedia(r))
	if err != nil {
		_ = r.Close()
		_ = h.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		_ = r.Close()
		_ = h.Close()
	})
	return &mediaNode{testNode: &testNode{h: h, loc: loc, b: b}, r: r}
}

// TestMediaForkedEarlyMedia: bob's desk phone and laptop, both at n2, answer alice's call
// (from n1) with early media (183 with SDP) at once. Each device gets its own session at
// both nodes (two sessions at each, each with its own ports at the caller's node and its
// own device at the callee's), and each carries its device's RTP to alice. When the desk
// phone answers, the laptop is cancelled and its sessions close (one session left at each
// node); the desk phone's audio flows both ways; BYE closes everything.
func TestMediaForkedEarlyMedia(t *testing.T) {
	dir := newMemDir()
	n1, n2 := newMediaNode(t, dir, "pastry"), newForkingMediaNode(t, dir, "pastry")
	connect(t, n1.testNode, n2.testNode)
	alice := newTestUA(t, "sip:alice@pastry", n1.testNode)
	desk := newTestUA(t, "sip:bob@pastry", n2.testNode, sipua.WithUAInstance("<urn:uuid:00000000-0000-0000-0000-00000000d35c>"),
		sipua.WithUAEarlyMedia(), sipua.WithUAAnswer(sipua.AnswerAuto, 6*time.Second))
	laptop := newTestUA(t, "sip:bob@pastry", n2.testNode, sipua.WithUAInstance("<urn:uuid:00000000-0000-0000-0000-0000001a7709>"),
		sipua.WithUAEarlyMedia(), sipua.WithUAAnswer(sipua.AnswerRingOnly, 0))
	ctx := ctxT(t, 30*time.Second)
	for _, ua := range []*sipua.UA{desk, laptop} {
		if _, err := ua.Register(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		c   *sipua.Call
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := alice.Call(ctx, "sip:bob@pastry")
		done <- result{c, err}
	}()

	// Early media from both devices: two sessions at each node, each with traffic.
	eventually(t, 5*time.Second, "both devices' early media relayed to alice in sessions of their own", func() bool {
		s1, s2 := n1.r.Sessions(), n2.r.Sessions()
		if len(s1) != 2 || len(s2) != 2 {
			return false
		}
		for _, s := range append(s1, s2...) {
			if s.Remote == "" {
				return false
			}
		}
		return s1[0].ToPhone >= 10 && s1[1].ToPhone >= 10 && s2[0].ToPeer >= 10 && s2[1].ToPeer >= 10
	})
	s1, s2 := n1.r.Sessions(), n2.r.Sessions()
	if s1[0].RTPPort == s1[1].RTPPort || s1[0].ID == s1[1].ID {
		t.Fatalf("the caller's node shares a session between the devices: %+v", s1)
	}
	if s2[0].Phone == "" || s2[0].Phone == s2[1].Phone {
		t.Fatalf("the callee's node sends both sessions to one device: %q, %q", s2[0].Phone, s2[1].Phone)
	}
	ids := map[string]bool{s1[0].ID: true, s1[1].ID: true}
	if !ids[s2[0].ID] || !ids[s2[1].ID] {
		t.Fatalf("the nodes name the sessions differently: %v / %s %s", ids, s2[0].ID, s2[1].ID)
	}

	// The desk phone answers: the laptop's sessions close at both nodes.
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("the desk phone did not answer")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	out := res.c
	var in *sipua.Call
	select {
	case in = <-desk.Incoming():
	case <-ctx.Done():
		t.Fatal("no call at the desk phone")
	}
	eventually(t, 10*time.Second, "the laptop's sessions closed, the desk phone's left", func() bool {
		return n1.r.Stats().Sessions == 1 && n2.r.Stats().Sessions == 1
	})
	received(t, out, 25, "alice hears the desk phone")
	received(t, in, 25, "the desk phone hears alice")
	// Alice holds, resumes and re-offers from a new port (re-INVITE, UPDATE): the desk
	// phone's leg's sessions follow, no other opens.
	if res, err := out.Hold(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("hold: %v %v", res, err)
	}
	if res, err := out.Resume(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("resume: %v %v", res, err)
	}
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.UPDATE} {
		if res, err := out.Reoffer(ctx, m, "sendrecv", true); err != nil || res.StatusCode != 200 {
			t.Fatalf("%s with a new port: %v %v", m, res, err)
		}
		received(t, out, 25, "alice hears the desk phone on her new port")
		received(t, in, 25, "the desk phone hears alice from her new port")
	}
	if n1.r.Stats().Sessions != 1 || n2.r.Stats().Sessions != 1 {
		t.Fatalf("sessions after the re-INVITE: %d, %d", n1.r.Stats().Sessions, n2.r.Stats().Sessions)
	}
	if err := out.Hangup(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sessionsGone(t, n1, n2)
}

// TestMediaLegOfCalleeRequest: the local phone's answer to a request of the callee (a
// re-INVITE whose From tag is the callee's) anchors on the callee device's leg: the SDP
// names that leg's token, and no other leg opens.
func TestMediaLegOfCalleeRequest(t *testing.T) {
	n1, _ := twoMediaNodes(t)
	const tok, calleeTag = "z9hG4bK-leg1", "callee-tag"
	c, err := n1.b.med.get("callee-reinvite", true)
	if err != nil {
		t.Fatal(err)
	}
	defer n1.b.med.end("callee-reinvite")
	c.mu.Lock()
	if _, err := c.legLocked(tok, true); err != nil {
		t.Fatal(err)
	}
	c.noteTagLocked(calleeTag, tok)
	c.mu.Unlock()

	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: 5070})
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: 5060,
		Params: oneParam("branch", "z9hG4bK-other")})
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "pastry"}, Params: oneParam("tag", calleeTag)})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "pastry"}, Params: oneParam("tag", "caller-tag")})
	req.AppendHeader(sip.NewHeader("Call-ID", "callee-reinvite"))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 2, MethodName: sip.INVITE})
	res := sip.NewResponseFromRequest(req, 200, "OK", []byte("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"))
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	n1.b.mediaAnswer(res, res, true, netip.MustParseAddr("127.0.0.1"))
	sd, err := parseSDP(res.Body())
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	legs := len(c.legs)
	c.mu.Unlock()
	if p, got, ok := anchorOf(sd); !ok || p != n1.h.ID() || got != tok || legs != 1 {
		t.Fatalf("anchor %s %q, %d legs:\n%s", p, got, legs, res.Body())
	}
}

func oneParam(k, v string) sip.HeaderParams {
	p := sip.NewParams()
	p.Add(k, v)
	return p
}

// TestMediaForkedEarlyMediaAcrossNodes: bob's desk phone at n2 and laptop at n3 (nodes of
// his domain) both send early media to alice at n1: alice's node anchors a session per
// device, each towards that device's node; the desk phone answers, the laptop's sessions
// close at n1 and n3, and the desk phone's audio flows both ways.
func TestMediaForkedEarlyMediaAcrossNodes(t *testing.T) {
	dir := newMemDir()
	var set atomic.Pointer[domains.DeviceSet]
	get := func() *domains.DeviceSet { return set.Load() }
	n1 := newMediaNode(t, dir, "pastry")
	n2, n3 := newForkingMediaNode(t, dir, "pastry", get), newForkingMediaNode(t, dir, "pastry", get)
	connect(t, n1.testNode, n2.testNode)
	connect(t, n1.testNode, n3.testNode)
	connect(t, n2.testNode, n3.testNode)
	const deskID, laptopID = "<urn:uuid:00000000-0000-0000-0000-00000000d35c>", "<urn:uuid:00000000-0000-0000-0000-0000001a7709>"
	alice := newTestUA(t, "sip:alice@pastry", n1.testNode)
	desk := newTestUA(t, "sip:bob@pastry", n2.testNode, sipua.WithUAInstance(deskID),
		sipua.WithUAEarlyMedia(), sipua.WithUAAnswer(sipua.AnswerAuto, 6*time.Second))
	laptop := newTestUA(t, "sip:bob@pastry", n3.testNode, sipua.WithUAInstance(laptopID),
		sipua.WithUAEarlyMedia(), sipua.WithUAAnswer(sipua.AnswerRingOnly, 0))
	ctx := ctxT(t, 30*time.Second)
	for _, ua := range []*sipua.UA{desk, laptop} {
		if _, err := ua.Register(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	aor, err := domains.ParseAOR("sip:bob@pastry")
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	entry := func(n *mediaNode, instance string) domains.DeviceEntry {
		return domains.DeviceEntry{Peer: n.h.ID(), Addrs: n.h.Addrs(), Expires: exp,
			Devices: []domains.DeviceRef{{Tag: domains.InstanceTag(aor, instance), Expires: exp}}}
	}
	set.Store(&domains.DeviceSet{AOR: aor.String(), Expires: exp, Entries: []domains.DeviceEntry{entry(n2, deskID), entry(n3, laptopID)}})

	type result struct {
		c   *sipua.Call
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := alice.Call(ctx, "sip:bob@pastry")
		done <- result{c, err}
	}()
	eventually(t, 5*time.Second, "both devices' early media relayed to alice in sessions of their own", func() bool {
		s1, s2, s3 := n1.r.Sessions(), n2.r.Sessions(), n3.r.Sessions()
		if len(s1) != 2 || len(s2) != 1 || len(s3) != 1 {
			return false
		}
		remotes := map[string]bool{s1[0].Remote: true, s1[1].Remote: true}
		return remotes[n2.h.ID().String()] && remotes[n3.h.ID().String()] &&
			s1[0].ToPhone >= 10 && s1[1].ToPhone >= 10 && s2[0].ToPeer >= 10 && s3[0].ToPeer >= 10
	})
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("the desk phone did not answer")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	out := res.c
	var in *sipua.Call
	select {
	case in = <-desk.Incoming():
	case <-ctx.Done():
		t.Fatal("no call at the desk phone")
	}
	eventually(t, 10*time.Second, "the laptop's sessions closed at alice's node and at its own", func() bool {
		s1 := n1.r.Sessions()
		return len(s1) == 1 && s1[0].Remote == n2.h.ID().String() && n3.r.Stats().Sessions == 0 && n2.r.Stats().Sessions == 1
	})
	received(t, out, 25, "alice hears the desk phone")
	received(t, in, 25, "the desk phone hears alice")
	if err := out.Hangup(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sessionsGone(t, n1, n2, n3)
}
