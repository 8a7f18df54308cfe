package sipbridge

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p"

	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/sipua"
)

// mediaNode is a test node whose bridge anchors media at its relay.
type mediaNode struct {
	*testNode
	r *media.Relay
}

func newMediaNode(t testing.TB, dir *memDir, domain string, ropts ...media.Option) *mediaNode {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := media.New(h, append([]media.Option{media.WithAddress(netip.MustParseAddr("127.0.0.1")),
		media.WithPorts(20000, 29999), media.WithLogger(testLogger(t))}, ropts...)...)
	if err != nil {
		_ = h.Close()
		t.Fatal(err)
	}
	loc := &memLocator{dir: dir, domain: domain, h: h}
	b, err := New(h, loc, WithListen("127.0.0.1:0"), WithLogger(testLogger(t)), WithMedia(r))
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

func twoMediaNodes(t testing.TB, ropts ...media.Option) (*mediaNode, *mediaNode) {
	dir := newMemDir()
	n1, n2 := newMediaNode(t, dir, "pastry", ropts...), newMediaNode(t, dir, "pastry", ropts...)
	connect(t, n1.testNode, n2.testNode)
	return n1, n2
}

// mediaCallSetup registers bob at n2 and places alice's (at n1) call to him.
func mediaCallSetup(t *testing.T, n1, n2 *mediaNode, aliceOpts, bobOpts []sipua.UAOption) (alice, bob *sipua.UA, out, in *sipua.Call) {
	t.Helper()
	ring := sipua.WithUAAnswer(sipua.AnswerAuto, 10*time.Millisecond)
	alice = newTestUA(t, "sip:alice@pastry", n1.testNode, append([]sipua.UAOption{ring}, aliceOpts...)...)
	bob = newTestUA(t, "sip:bob@pastry", n2.testNode, append([]sipua.UAOption{ring}, bobOpts...)...)
	ctx := ctxT(t, 20*time.Second)
	if _, err := alice.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	out, err := alice.Call(ctx, "sip:bob@pastry")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case in = <-bob.Incoming():
	case <-ctx.Done():
		t.Fatal("bob did not answer")
	}
	return alice, bob, out, in
}

// received waits until every stream of c received at least n packets more than it had.
func received(t *testing.T, c *sipua.Call, n uint64, what string) {
	t.Helper()
	base := c.Media()
	eventually(t, 10*time.Second, what, func() bool {
		for i, m := range c.Media() {
			if m.Direction != "rejected" && m.Received < base[i].Received+n {
				return false
			}
		}
		return true
	})
}

func sessionsGone(t *testing.T, ns ...*mediaNode) {
	t.Helper()
	for _, n := range ns {
		eventually(t, 10*time.Second, "the relay's sessions closed", func() bool { return n.r.Stats().Sessions == 0 })
	}
}

func sdpOf(t *testing.T, m sip.Message) string {
	t.Helper()
	if !hasSDP(m) {
		t.Fatalf("no SDP in %v", m)
	}
	return string(m.Body())
}

// TestMediaAnchored: a call between UAs of two nodes has its media anchored at both: each
// UA's SDP names its own node's port, RTP flows both ways through the relays, and BYE
// closes the sessions.
func TestMediaAnchored(t *testing.T) {
	n1, n2 := twoMediaNodes(t)
	_, _, out, in := mediaCallSetup(t, n1, n2, nil, nil)
	s1, s2 := n1.r.Sessions(), n2.r.Sessions()
	if len(s1) != 1 || len(s2) != 1 {
		t.Fatalf("sessions: %d at the caller's node, %d at the callee's", len(s1), len(s2))
	}
	if s1[0].Remote != n2.h.ID().String() || s2[0].Remote != n1.h.ID().String() {
		t.Fatalf("remotes: %s, %s", s1[0].Remote, s2[0].Remote)
	}
	// What each phone was told: its own node's port, no anchor attribute.
	answer := sdpOf(t, out.Responses[len(out.Responses)-1])
	offer := sdpOf(t, in.Invite)
	for _, c := range []struct {
		sdp  string
		port int
	}{{answer, s1[0].RTPPort}, {offer, s2[0].RTPPort}} {
		sd, err := parseSDP([]byte(c.sdp))
		if err != nil {
			t.Fatal(err)
		}
		if got := sd.MediaDescriptions[0].MediaName.Port.Value; got != c.port || sd.ConnectionInformation.Address.Address != "127.0.0.1" {
			t.Fatalf("SDP names %s:%d, want the node's port %d:\n%s", sd.ConnectionInformation.Address.Address, got, c.port, c.sdp)
		}
		if strings.Contains(c.sdp, anchorAttr) {
			t.Fatalf("anchor attribute reached a phone:\n%s", c.sdp)
		}
	}
	received(t, out, 25, "alice hears bob")
	received(t, in, 25, "bob hears alice")
	ctx := ctxT(t, 10*time.Second)
	if err := out.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	sessionsGone(t, n1, n2)
	a, b := out.Media()[0], in.Media()[0]
	// In flight at the BYE: a few packets. Otherwise everything arrives.
	if b.Received+5 < a.Sent*95/100 || a.Received+5 < b.Sent*95/100 {
		t.Fatalf("alice sent %d, bob received %d; bob sent %d, alice received %d", a.Sent, b.Received, b.Sent, a.Received)
	}
	st1, st2 := n1.r.Stats(), n2.r.Stats()
	if st1.ToPeer == 0 || st1.ToPhone == 0 || st2.ToPeer == 0 || st2.ToPhone == 0 {
		t.Fatalf("relay stats: %+v / %+v", st1, st2)
	}
	t.Logf("alice sent %d, bob received %d; bob sent %d, alice received %d; relay drops %v", a.Sent, b.Received, b.Sent, a.Received, st1.Dropped)
}

// TestMediaSameNodeNotAnchored: two UAs of one node keep their media between them.
func TestMediaSameNodeNotAnchored(t *testing.T) {
	n1, _ := twoMediaNodes(t)
	_, _, out, in := mediaCallSetup(t, n1, n1, nil, nil)
	if n := n1.r.Stats().SessionsOpened; n != 0 {
		t.Fatalf("%d sessions for a call within one node", n)
	}
	received(t, in, 10, "bob hears alice directly")
	received(t, out, 10, "alice hears bob directly")
	if strings.Contains(sdpOf(t, in.Invite), anchorAttr) {
		t.Fatal("anchor attribute in a call within one node")
	}
}

// TestMediaHoldResume: a re-INVITE offering sendonly puts the call on hold (the callee
// answers recvonly and stops sending; the sessions stay); resuming restores both ways.
func TestMediaHoldResume(t *testing.T) {
	n1, n2 := twoMediaNodes(t)
	_, _, out, in := mediaCallSetup(t, n1, n2, nil, nil)
	received(t, out, 10, "alice hears bob")
	ctx := ctxT(t, 20*time.Second)
	if res, err := out.Hold(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("hold: %v %v", res, err)
	}
	if d := in.Media()[0].Direction; d != "recvonly" {
		t.Fatalf("callee's direction on hold: %s", d)
	}
	sent := in.Media()[0].Sent
	received(t, in, 10, "bob still hears alice on hold")
	if in.Media()[0].Sent != sent {
		t.Fatalf("the held callee went on sending: %d -> %d", sent, in.Media()[0].Sent)
	}
	if n1.r.Stats().Sessions != 1 || n2.r.Stats().Sessions != 1 {
		t.Fatal("hold closed the sessions")
	}
	if res, err := out.Resume(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("resume: %v %v", res, err)
	}
	received(t, out, 10, "alice hears bob after resuming")
	if d := in.Media()[0].Direction; d != "sendrecv" {
		t.Fatalf("callee's direction after resume: %s", d)
	}
	// A new port (UPDATE): the relay's phone address follows the new SDP.
	if res, err := out.Reoffer(ctx, sip.UPDATE, "sendrecv", true); err != nil || res.StatusCode != 200 {
		t.Fatalf("UPDATE with a new port: %v %v", res, err)
	}
	received(t, out, 10, "alice hears bob on her new port")
	if err := out.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	sessionsGone(t, n1, n2)
}

// TestMediaLateOffer: an INVITE without SDP; the callee offers in its 200, the caller
// answers in the ACK; the media is anchored both ways.
func TestMediaLateOffer(t *testing.T) {
	n1, n2 := twoMediaNodes(t)
	_, _, out, in := mediaCallSetup(t, n1, n2, []sipua.UAOption{sipua.WithUALateOffer()}, nil)
	if hasSDP(in.Invite) {
		t.Fatal("the INVITE carried an offer")
	}
	received(t, out, 20, "alice hears bob")
	received(t, in, 20, "bob hears alice")
	if n1.r.Stats().Sessions != 1 || n2.r.Stats().Sessions != 1 {
		t.Fatalf("sessions %d, %d", n1.r.Stats().Sessions, n2.r.Stats().Sessions)
	}
	if err := in.Hangup(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sessionsGone(t, n1, n2)
}

// TestMediaAudioVideo: each of two m-lines is anchored.
func TestMediaAudioVideo(t *testing.T) {
	n1, n2 := twoMediaNodes(t)
	_, _, out, in := mediaCallSetup(t, n1, n2, []sipua.UAOption{sipua.WithUAVideo()}, nil)
	if len(out.Media()) != 2 || len(in.Media()) != 2 {
		t.Fatalf("streams: %d, %d", len(out.Media()), len(in.Media()))
	}
	received(t, out, 20, "alice gets audio and video")
	received(t, in, 20, "bob gets audio and video")
	if n1.r.Stats().Sessions != 2 || n2.r.Stats().Sessions != 2 {
		t.Fatalf("sessions %d, %d", n1.r.Stats().Sessions, n2.r.Stats().Sessions)
	}
	if err := out.Hangup(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sessionsGone(t, n1, n2)
}

// TestMediaCancelEarlyMedia: the callee sends early media with a 183 while ringing; the
// caller hears it, cancels, and both nodes' sessions close.
func TestMediaCancelEarlyMedia(t *testing.T) {
	n1, n2 := twoMediaNodes(t)
	alice := newTestUA(t, "sip:alice@pastry", n1.testNode)
	bob := newTestUA(t, "sip:bob@pastry", n2.testNode, sipua.WithUAAnswer(sipua.AnswerRingOnly, 0), sipua.WithUAEarlyMedia())
	ctx := ctxT(t, 20*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var call *sipua.Call
	var err error
	go func() { call, err = alice.Call(cctx, "sip:bob@pastry"); close(done) }()
	eventually(t, 10*time.Second, "early media relayed to alice", func() bool { return n1.r.Stats().ToPhone >= 10 })
	cancel()
	<-done
	// sipgo's WaitAnswer sends CANCEL, waits for the 487 and returns the context's error.
	if !errors.Is(err, context.Canceled) || call.InviteResponse() == nil || call.InviteResponse().StatusCode != 487 {
		t.Fatalf("cancelled call: %v, last response %v", err, call.InviteResponse())
	}
	if m := call.Media(); len(m) != 1 || m[0].Received < 10 {
		t.Fatalf("alice's early media: %+v", m)
	}
	sessionsGone(t, n1, n2)
}

// TestMediaLatching: a phone whose SDP names another port than it sends from (as behind
// a NAT on its LAN) still hears the other side: the node sends where its RTP comes from.
// A stranger's packets to the node's port are not relayed.
func TestMediaLatching(t *testing.T) {
	n1, n2 := twoMediaNodes(t)
	lie := sipua.WithUASDPPortOffset(1000)
	_, _, out, in := mediaCallSetup(t, n1, n2, nil, []sipua.UAOption{lie})
	if got, real := in.Media()[0].Local, in.Media()[0].SDPPort; strings.HasSuffix(got, ":"+strconv.Itoa(real)) {
		t.Fatalf("the SDP names the real port %s", got)
	}
	received(t, in, 25, "bob hears alice at the port he sends from")
	received(t, out, 25, "alice hears bob")

	// A stranger (another IP) sends to the caller node's port: dropped, not relayed.
	rtpPort := n1.r.Sessions()[0].RTPPort
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := n1.r.Stats().ToPeer
	pkt := []byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9}
	for range 20 {
		if _, err := c.WriteToUDP(pkt, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: rtpPort}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "20 strangers' packets dropped", func() bool { return n1.r.Stats().Dropped[media.DropStranger] >= 20 })
	if err := out.Hangup(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sessionsGone(t, n1, n2)
	a, b := out.Media()[0], in.Media()[0]
	if b.Received > a.Sent || n1.r.Stats().ToPeer-before > a.Sent {
		t.Fatalf("stranger's packets relayed: alice sent %d, bob received %d", a.Sent, b.Received)
	}
}

// TestMediaFull: when the callee's node has no session left, the INVITE gets 503 and
// nothing stays open.
func TestMediaFull(t *testing.T) {
	dir := newMemDir()
	n1 := newMediaNode(t, dir, "pastry")
	n2 := newMediaNode(t, dir, "pastry", media.WithMaxSessions(1))
	connect(t, n1.testNode, n2.testNode)
	alice := newTestUA(t, "sip:alice@pastry", n1.testNode, sipua.WithUAVideo())
	bob := newTestUA(t, "sip:bob@pastry", n2.testNode)
	ctx := ctxT(t, 20*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	_, err := alice.Call(ctx, "sip:bob@pastry")
	var cf *sipua.ErrCallFailed
	if !errors.As(err, &cf) || cf.Response.StatusCode != 503 {
		t.Fatalf("call needing 2 sessions at a node with 1: %v", err)
	}
	sessionsGone(t, n1, n2)
}

// TestMediaRegistrationGone: when the callee's registration ends, its node closes the
// call's sessions.
func TestMediaRegistrationGone(t *testing.T) {
	n1, n2 := twoMediaNodes(t)
	_, bob, _, _ := mediaCallSetup(t, n1, n2, nil, nil)
	if _, err := bob.Unregister(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	sessionsGone(t, n2)
}

// TestMediaForeignAnchor: a phone cannot make its node anchor for another node by writing
// the anchor attribute itself: the node replaces it with its own.
func TestMediaForeignAnchor(t *testing.T) {
	n1, n2 := twoMediaNodes(t)
	_ = newTestUA(t, "sip:bob@pastry", n2.testNode)
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "pastry"})
	body := "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=" + anchorAttr + ":" +
		n2.h.ID().String() + "\r\nm=audio 4000 RTP/AVP 0\r\na=candidate:1 1 UDP 1 127.0.0.1 4000 typ host\r\n"
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(body))
	req.AppendHeader(sip.NewHeader("Call-ID", "foreign-anchor"))
	c, err := n1.b.med.get("foreign-anchor", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := n1.b.fromPhone(c, "", req, netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	sd, err := parseSDP(req.Body())
	if err != nil {
		t.Fatal(err)
	}
	if p, _, ok := anchorOf(sd); !ok || p != n1.h.ID() || strings.Count(string(req.Body()), anchorAttr) != 1 {
		t.Fatalf("anchor after the node: %q\n%s", p, req.Body())
	}
	n1.b.med.end("foreign-anchor")
}
