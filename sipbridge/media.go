package sipbridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
	sdp "github.com/pion/sdp/v3"

	"github.com/hiersip/hiersip/media"
)

// WithMedia makes the bridge anchor the media of calls between its user agents and those
// of other nodes at r (package media): the node's phone gets r's ports in its SDP and r
// carries the RTP to the other end node. The relay stays the caller's. Without it SDP
// passes untouched.
func WithMedia(r *media.Relay) Option { return func(c *config) error { c.media = r; return nil } }

// Media returns the relay given with WithMedia, or nil.
func (b *Bridge) Media() *media.Relay { return b.cfg.media }

// How SDP is anchored (see the package doc, "Media"):
//
//   - Only at the end nodes: a message going from a local UA into the overlay (toOverlay)
//     or from the overlay to a local UA (toUA). A proxy (overlay in, overlay out) and a call
//     between two UAs of one node (UA in, UA out) leave the SDP alone.
//   - toOverlay: the phone's SDP (offer or answer) tells where the phone receives; the node
//     opens a session per active m-line, notes the phone's addresses and adds the anchor
//     attribute naming itself. The SDP keeps the phone's addresses: if the other end node
//     does not anchor, its phone gets what it got before media anchoring existed.
//   - toUA: an SDP with the other node's anchor attribute is rewritten for the phone
//     (rewriteForPhone); one without it means the other end does not anchor: the call's
//     sessions are closed and SDPs pass as they are from then on (off).
//   - The sessions of a call end with its BYE, a final non-2xx answer to its INVITE
//     (CANCEL, failure), the local phone's registration gone, or the relay's idle timeout.
//   - Each device keeps its own media (issue 19): a call's sessions are kept per leg, one
//     leg per branch the callee's node sends the INVITE on. The first branch of a fork
//     (and a call to one device) uses the call's own leg (token "", wire session ID from
//     the Call-ID, as before); every other branch's leg is named by its Via branch, which
//     the callee's node puts in the anchor attribute of the SDPs its device sends
//     ("a=x-hiersip-anchor:<peer-id> <token>"). A node forking to another node tells it
//     whether its branch is the first (Hiersip-Fork: 1, else 2). The caller's node opens a
//     leg per token, so two devices sending early media at once get two sessions at both
//     nodes, each with its own ports (and wire session ID: the Call-ID and the token). The
//     leg of a branch closes with that branch's final non-2xx answer (the CANCEL of a
//     losing branch); at the caller's node a 2xx closes the other legs. In-dialog requests
//     find their leg by the dialog's callee tag.

// mediaCall is what an end node keeps of one call's media.
type mediaCall struct {
	mu      sync.Mutex
	id      string
	created time.Time
	ips     []netip.Addr         // the local phone's SIP addresses: the only ones media may go to
	contact string               // the local caller's contact (uriAddrKey), to end with its registration
	phone   []sdpStream          // the local phone's streams in its last SDP, for legs opened later
	legs    map[string]*mediaLeg // by token; "" is the call's own (wire key: the Call-ID)
	tags    map[string]string    // a dialog's callee tag → its leg's token
	off     bool                 // not anchored: SDP passes untouched (anchor attributes removed)
}

// mediaLeg is the media of one branch (one device) of a call.
type mediaLeg struct {
	token    string
	branch   string  // the Via branch of the INVITE to the local device, at the callee's node
	contact  string  // the local device's contact (uriAddrKey), at the callee's node
	remote   peer.ID // the other end node
	sessions []*media.Session
}

// mediaLegsMax bounds the legs of a call (the devices answering with SDP); maxTokenLen
// the length of a leg's token.
const (
	mediaLegsMax = 32
	maxTokenLen  = 64
)

var errMediaLegs = errors.New("sipbridge: too many media legs in a call")

// legLocked returns the leg with token, creating it when create (under c.mu).
func (c *mediaCall) legLocked(token string, create bool) (*mediaLeg, error) {
	if l := c.legs[token]; l != nil || !create {
		return l, nil
	}
	if c.legs == nil {
		c.legs = map[string]*mediaLeg{}
	}
	if len(c.legs) >= mediaLegsMax {
		return nil, errMediaLegs
	}
	l := &mediaLeg{token: token}
	c.legs[token] = l
	return l, nil
}

// tokenOfLocked returns the token of the leg of the dialog with one of tags (under c.mu),
// "" when none is known.
func (c *mediaCall) tokenOfLocked(tags ...string) string {
	for _, t := range tags {
		if tok, ok := c.tags[t]; ok && t != "" {
			return tok
		}
	}
	return ""
}

// noteTagLocked notes that the dialog with callee tag belongs to the leg token (under c.mu).
func (c *mediaCall) noteTagLocked(tag, token string) {
	if tag == "" || token == "" {
		return
	}
	if c.tags == nil {
		c.tags = map[string]string{}
	}
	if _, ok := c.tags[tag]; ok || len(c.tags) < mediaLegsMax {
		c.tags[tag] = token
	}
}

// legOfBranchLocked returns the token of the leg of the branch with Via branch br (under
// c.mu).
func (c *mediaCall) legOfBranchLocked(br string) (string, bool) {
	if br == "" {
		return "", false
	}
	for tok, l := range c.legs {
		if l.branch == br {
			return tok, true
		}
	}
	return "", false
}

// closeLegLocked closes the sessions of the leg token and forgets it (under c.mu).
func (c *mediaCall) closeLegLocked(token string) {
	l := c.legs[token]
	if l == nil {
		return
	}
	delete(c.legs, token)
	for _, s := range l.sessions {
		if s != nil {
			s.Close()
		}
	}
}

// mediaCalls is the bridge's table of calls with media.
type mediaCalls struct {
	mu    sync.Mutex
	calls map[string]*mediaCall
	clock clock.Clock // the bridge's (WithClock)
}

// mediaCallsMax bounds the table: calls with open sessions are bounded by the relay; the
// others (a pending late offer, a call whose sessions timed out) are pruned after
// mediaCallLinger.
const (
	mediaCallsMax   = 8192
	mediaCallLinger = 2 * time.Minute
)

var errMediaTable = errors.New("sipbridge: too many calls with media")

// get returns the call's entry; with create, a new one when there is none.
func (t *mediaCalls) get(callID string, create bool) (*mediaCall, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.calls[callID]; c != nil || !create {
		return c, nil
	}
	if t.calls == nil {
		t.calls = map[string]*mediaCall{}
	}
	if len(t.calls) >= mediaCallsMax {
		now := t.clock.Now()
		for id, c := range t.calls {
			if now.Sub(c.created) > mediaCallLinger && !c.live() {
				delete(t.calls, id)
			}
		}
		if len(t.calls) >= mediaCallsMax {
			return nil, errMediaTable
		}
	}
	c := &mediaCall{id: callID, created: t.clock.Now()}
	t.calls[callID] = c
	return c, nil
}

// endBranch closes the sessions of the leg of a call's branch with Via branch br.
func (t *mediaCalls) endBranch(callID, br string) {
	c, _ := t.get(callID, false)
	if c == nil {
		return
	}
	c.mu.Lock()
	if tok, ok := c.legOfBranchLocked(br); ok {
		c.closeLegLocked(tok)
	}
	c.mu.Unlock()
}

// won closes the legs of a call other than that of the dialog with callee tag, whose 2xx
// came without SDP.
func (t *mediaCalls) won(callID, tag string) {
	c, _ := t.get(callID, false)
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	token := c.tokenOfLocked(tag)
	if token == "" {
		return
	}
	for tok := range c.legs {
		if tok != token {
			c.closeLegLocked(tok)
		}
	}
}

// end closes the call's sessions and forgets it.
func (t *mediaCalls) end(callID string) {
	t.mu.Lock()
	c := t.calls[callID]
	delete(t.calls, callID)
	t.mu.Unlock()
	if c != nil {
		c.closeAll()
	}
}

// contactGone ends the calls of a local phone whose registration ended.
func (t *mediaCalls) contactGone(keys []string) {
	if len(keys) == 0 {
		return
	}
	t.mu.Lock()
	var gone []*mediaCall
	for id, c := range t.calls {
		c.mu.Lock()
		hit := c.contact != "" && slices.Contains(keys, c.contact)
		if !hit {
			for tok, l := range c.legs {
				if l.contact != "" && slices.Contains(keys, l.contact) {
					c.closeLegLocked(tok)
				}
			}
		}
		c.mu.Unlock()
		if hit {
			gone = append(gone, c)
			delete(t.calls, id)
		}
	}
	t.mu.Unlock()
	for _, c := range gone {
		c.closeAll()
	}
}

func (c *mediaCall) live() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.legs {
		for _, s := range l.sessions {
			if s != nil && !s.Closed() {
				return true
			}
		}
	}
	return false
}

func (c *mediaCall) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for tok := range c.legs {
		c.closeLegLocked(tok)
	}
}

// turnOff stops anchoring the call (under c.mu).
func (c *mediaCall) turnOffLocked() {
	c.off = true
	for tok := range c.legs {
		c.closeLegLocked(tok)
	}
}

// sessionKey is the relay key of m-line i of the leg: both end nodes derive the same one.
func (c *mediaCall) sessionKey(l *mediaLeg, i int) media.Key {
	if l.token == "" {
		return media.Key{CallID: c.id, Index: i}
	}
	return media.Key{CallID: c.id + ";leg=" + l.token, Index: i}
}

// session returns the open session of m-line i of leg l, opening one when needed (under
// c.mu); opened reports a new one.
func (c *mediaCall) sessionLocked(r *media.Relay, l *mediaLeg, i int, remote peer.ID) (s *media.Session, opened bool, err error) {
	for len(l.sessions) <= i {
		l.sessions = append(l.sessions, nil)
	}
	if s := l.sessions[i]; s != nil && !s.Closed() {
		if remote != "" && s.Remote() == "" {
			if err := s.SetRemote(remote); err != nil {
				return nil, false, err
			}
		}
		return s, false, nil
	}
	s, err = r.Open(c.sessionKey(l, i), remote)
	if err != nil {
		return nil, false, err
	}
	l.sessions[i] = s
	return s, true, nil
}

func (l *mediaLeg) closeSession(i int) {
	if i < len(l.sessions) && l.sessions[i] != nil {
		l.sessions[i].Close()
		l.sessions[i] = nil
	}
}

// addIP notes an address of the local phone's SIP (under c.mu).
func (c *mediaCall) addIPLocked(ip netip.Addr) {
	if ip = ip.Unmap(); ip.IsValid() && !ip.IsUnspecified() && !slices.Contains(c.ips, ip) && len(c.ips) < 8 {
		c.ips = append(c.ips, ip)
	}
}

// fromPhone processes an SDP the local phone sent into the overlay, for the leg token;
// src is the IP its SIP came from.
func (b *Bridge) fromPhone(c *mediaCall, token string, m sip.Message, src netip.Addr) error {
	sd, err := parseSDP(m.Body())
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		b.log.Debug("media: unparsable SDP from a phone, not anchoring", "call", c.id, "err", err)
		c.turnOffLocked()
		return nil
	}
	if c.off {
		setSDP(m, sd, "")
		return nil
	}
	known := len(c.ips) == 0 || slices.Contains(c.ips, src.Unmap())
	if !known {
		// Another address than the one that set up the call: it may not redirect the
		// call's media. The sessions stay as they are; the other node keeps anchoring.
		b.log.Debug("media: SDP of a call from another address ignored", "call", c.id, "src", src)
		setSDP(m, sd, anchorValue(b.selfStr, token))
		return nil
	}
	c.addIPLocked(src)
	l, err := c.legLocked(token, true)
	if err != nil {
		return err
	}
	streams := streamsOf(sd)
	c.phone = streams
	for i, st := range streams {
		if st.port == 0 {
			l.closeSession(i)
			continue
		}
		s, _, err := c.sessionLocked(b.cfg.media, l, i, "")
		if err != nil {
			return err
		}
		s.SetPhone(st.rtp, st.rtcp, c.ips...)
		s.SetHold(st.hold)
	}
	setSDP(m, sd, anchorValue(b.selfStr, token))
	return nil
}

// anchorValue is the anchor attribute's value naming node id and leg token.
func anchorValue(id, token string) string {
	if token == "" {
		return id
	}
	return id + " " + token
}

// toPhone rewrites an SDP from the other end node for the local phone; dst is the IP the
// node sends the phone's SIP to (invalid when not known here). The leg is the one the
// anchor attribute names, else token. tag is the dialog's callee tag ("" in a request);
// won: m is a 2xx to the INVITE, whose leg is the call's from now on.
func (b *Bridge) toPhone(c *mediaCall, token string, m sip.Message, dst netip.Addr, tag string, won bool) error {
	sd, err := parseSDP(m.Body())
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		b.log.Debug("media: unparsable SDP from the overlay, not anchoring", "call", c.id, "err", err)
		c.turnOffLocked()
		return nil
	}
	anchor, tok, ok := anchorOf(sd)
	if !ok || c.off || anchor == b.self {
		if !c.off {
			b.log.Debug("media: the other end node does not anchor", "call", c.id)
		}
		c.turnOffLocked()
		if _, had := sd.Attribute(anchorAttr); had {
			setSDP(m, sd, "")
		}
		return nil
	}
	if tok != "" {
		token = tok
	}
	l, err := c.legLocked(token, true)
	if err != nil {
		return err
	}
	if l.remote == "" {
		l.remote = anchor
	} else if l.remote != anchor {
		b.log.Debug("media: anchor of another node ignored", "call", c.id, "anchor", anchor, "remote", l.remote)
	}
	c.noteTagLocked(tag, token)
	if won {
		// A device answered: the other devices' legs end.
		for t := range c.legs {
			if t != token {
				c.closeLegLocked(t)
			}
		}
	}
	c.addIPLocked(dst)
	streams := streamsOf(sd)
	ports := make([][2]int, len(streams))
	for i, st := range streams {
		if st.port == 0 {
			l.closeSession(i)
			continue
		}
		s, opened, err := c.sessionLocked(b.cfg.media, l, i, l.remote)
		if err != nil {
			return err
		}
		if opened && i < len(c.phone) && c.phone[i].port != 0 {
			s.SetPhone(c.phone[i].rtp, c.phone[i].rtcp, c.ips...)
		}
		s.Allow(c.ips...)
		s.SetHold(st.hold)
		ports[i][0], ports[i][1] = s.Ports()
	}
	phone := dst
	if !phone.IsValid() && len(c.ips) > 0 {
		phone = c.ips[0]
	}
	rewriteForPhone(sd, b.mediaIP(phone), ports)
	if body, err := sd.Marshal(); err == nil {
		m.SetBody(body)
	}
	return nil
}

// setSDP sets m's body to sd with the anchor attribute naming id ("": none).
func setSDP(m sip.Message, sd *sdp.SessionDescription, id string) {
	setAnchor(sd, id)
	if body, err := sd.Marshal(); err == nil {
		m.SetBody(body)
	}
}

// mediaRequest anchors the SDP of fwd, a request this node forwards, when the node is an
// end node of its call. A code other than 0 refuses the request (503: no media resources).
func (b *Bridge) mediaRequest(req, fwd *sip.Request, h hop, from peer.ID) (int, string) {
	return b.mediaBranch(req, fwd, h, from, mediaBaseAllowed(req, from))
}

// mediaBaseAllowed reports whether a branch of req to a local device may anchor in the
// call's own leg: unless another node forked req here as one of its other branches
// (Hiersip-Fork: 2; its first branch carries 1).
func mediaBaseAllowed(req *sip.Request, from peer.ID) bool {
	if forkedBy(req, from) == "" {
		return true
	}
	h := req.GetHeader(headerFork)
	return h != nil && strings.TrimSpace(h.Value()) == "1"
}

// mediaBranch is mediaRequest for one branch of a request; base: as sendBranch's.
func (b *Bridge) mediaBranch(req, fwd *sip.Request, h hop, from peer.ID, base bool) (int, string) {
	if b.cfg.media == nil || req.CallID() == nil {
		return 0, ""
	}
	toOverlay := from == "" && h.peer != ""
	toUA := from != "" && h.peer == "" && h.uri != nil
	if !toOverlay && !toUA {
		return 0, ""
	}
	callID := req.CallID().Value()
	if req.Method == sip.BYE {
		b.med.end(callID)
		return 0, ""
	}
	if hasSDP(fwd) && isWebRTC(fwd.Body()) {
		return 0, "" // webrtc.go: left to the browsers
	}
	initial := req.IsInvite() && !hasTag(req.To())
	c, err := b.med.get(callID, initial)
	if err != nil {
		if hasSDP(fwd) {
			return 503, "Service Unavailable: no media resources (" + err.Error() + ")"
		}
		return 0, ""
	}
	if c == nil {
		return 0, ""
	}
	token := ""
	c.mu.Lock()
	if initial {
		if toOverlay {
			if ct := req.Contact(); ct != nil {
				c.contact = uriAddrKey(&ct.Address)
			}
		} else {
			// A leg per branch: each device gets sessions of its own. The first branch
			// of the node that resolved the AOR keeps the call's own leg (as a call to
			// one device does); the others, and every branch of a fork another node
			// sent here, are named by their Via branch.
			br := branchToken(fwd)
			token = br
			if base && c.legs[""] == nil {
				token = ""
			}
			l, lerr := c.legLocked(token, true)
			if lerr != nil {
				c.mu.Unlock()
				return 503, "Service Unavailable: no media resources (" + lerr.Error() + ")"
			}
			l.contact, l.branch = uriAddrKey(h.uri), br
			c.addIPLocked(hostIP(fwd.Destination()))
		}
	} else {
		token = c.tokenOfLocked(toTag(req.To()), fromTag(req.From()))
	}
	c.mu.Unlock()
	if !hasSDP(fwd) {
		return 0, ""
	}
	if toOverlay {
		err = b.fromPhone(c, token, fwd, hostIP(req.Source()))
	} else {
		err = b.toPhone(c, token, fwd, netip.Addr{}, "", false)
	}
	if err == nil {
		return 0, ""
	}
	b.log.Info("media: cannot anchor", "call", callID, "method", req.Method, "err", err)
	if req.IsAck() {
		c.mu.Lock()
		c.turnOffLocked()
		c.mu.Unlock()
		return 0, ""
	}
	if initial && token != "" {
		c.mu.Lock()
		c.closeLegLocked(token)
		c.mu.Unlock()
	} else if initial {
		b.med.end(callID)
	}
	return 503, fmt.Sprintf("Service Unavailable: no media resources (%v)", err)
}

// mediaResponse anchors the SDP of out, a response this node relays upstream, at an end node.
// fromUA: the response comes from a local UA (else a peer); toPeer: it goes to a peer
// (else to the local UA req came from).
func (b *Bridge) mediaResponse(req *sip.Request, res, out *sip.Response, fromUA, toPeer bool) {
	if b.cfg.media == nil || req.CallID() == nil || res.StatusCode <= 100 || res.StatusCode >= 300 {
		return
	}
	if !hasSDP(out) {
		if !fromUA && !toPeer && res.IsSuccess() && req.IsInvite() {
			b.med.won(req.CallID().Value(), toTag(res.To())) // an answer given in a 183
		}
		return
	}
	switch {
	case fromUA && toPeer:
		b.mediaAnswer(res, out, true, hostIP(res.Source()))
	case !fromUA && !toPeer:
		b.mediaAnswer(res, out, false, hostIP(req.Source()))
	}
}

// mediaStray anchors the SDP of a 2xx retransmission forwarded statelessly.
func (b *Bridge) mediaStray(res, out *sip.Response, toPeer bool) {
	if b.cfg.media == nil || res.CallID() == nil || !hasSDP(out) {
		return
	}
	b.mediaAnswer(res, out, toPeer, hostIP(res.Source()))
}

// mediaAnswer anchors the SDP of out, the response res relayed upstream: from the local
// phone into the overlay (toOverlay: its leg is the branch it came on, or its dialog's),
// or from the overlay to the local phone.
func (b *Bridge) mediaAnswer(res, out *sip.Response, toOverlay bool, ip netip.Addr) {
	callID := res.CallID().Value()
	c, _ := b.med.get(callID, false)
	if c == nil {
		return
	}
	tag := toTag(res.To())
	won := res.IsSuccess() && res.CSeq() != nil && res.CSeq().MethodName == sip.INVITE
	var err error
	c.mu.Lock()
	// The leg: the branch the response came on (a device's answer to the first INVITE),
	// else that of its dialog, whose callee tag is the To tag (a request of the caller)
	// or the From tag (one of the callee).
	token, ok := c.legOfBranchLocked(branchToken(res))
	if !toOverlay || !ok {
		token = c.tokenOfLocked(tag, fromTag(res.From()))
	}
	if toOverlay {
		c.noteTagLocked(tag, token)
	}
	c.mu.Unlock()
	if toOverlay {
		err = b.fromPhone(c, token, out, ip)
	} else {
		err = b.toPhone(c, token, out, ip, tag, won)
	}
	if err != nil {
		// A response cannot be refused: the call goes on unanchored.
		b.log.Info("media: cannot anchor, passing the SDP on", "call", callID, "status", out.StatusCode, "err", err)
		c.mu.Lock()
		c.turnOffLocked()
		c.mu.Unlock()
		if sd, perr := parseSDP(out.Body()); perr == nil {
			setSDP(out, sd, "")
		}
	}
}

// mediaFinal ends a call's media when its INVITE got a final non-2xx answer (CANCEL,
// rejection, failure).
func (b *Bridge) mediaFinal(req *sip.Request, code int) {
	if b.cfg.media == nil || code < 300 || !req.IsInvite() || hasTag(req.To()) || req.CallID() == nil {
		return
	}
	b.med.end(req.CallID().Value())
}

// mediaBranchEnd closes the media leg of fwd, a branch of an INVITE this node forked to a
// local device, when that branch ended without a 2xx (CANCEL of a losing branch, failure).
func (b *Bridge) mediaBranchEnd(fwd *sip.Request) {
	if b.cfg.media == nil || !fwd.IsInvite() || fwd.CallID() == nil {
		return
	}
	b.med.endBranch(fwd.CallID().Value(), branchToken(fwd))
}

// branchToken is the leg token of a branch: the Via branch of m's top Via (that of the
// request this node sent to its device, and of the device's responses); "" when it has
// none usable.
func branchToken(m sip.Message) string {
	var v *sip.ViaHeader
	switch m := m.(type) {
	case *sip.Request:
		v = m.Via()
	case *sip.Response:
		v = m.Via()
	}
	if v == nil {
		return ""
	}
	br, _ := v.Params.Get("branch")
	if !legToken(br) {
		return ""
	}
	return br
}

// legToken reports whether t may name a leg: 1 to maxTokenLen RFC 3261 token characters.
func legToken(t string) bool { return len(t) <= maxTokenLen && validToken(t) }

// toTag and fromTag are the tags of a To and a From header, "" without one.
func toTag(h *sip.ToHeader) string {
	if h == nil {
		return ""
	}
	t, _ := h.Params.Get("tag")
	return t
}

func fromTag(h *sip.FromHeader) string {
	if h == nil {
		return ""
	}
	t, _ := h.Params.Get("tag")
	return t
}

// hostIP is the IP of a "host:port" (or bare host) address, invalid when it is a name.
func hostIP(addr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, _ := netip.ParseAddr(host)
	return ip.Unmap()
}

// mediaContactsGone ends the media of calls whose local phone's contact is no longer
// registered here (unregistered or lapsed).
func (b *Bridge) mediaContactsGone(uris []sip.Uri) {
	if b.cfg.media == nil || len(uris) == 0 {
		return
	}
	var keys []string
	for i := range uris {
		if !b.reg.servesAddr(&uris[i]) {
			keys = append(keys, uriAddrKey(&uris[i]))
		}
	}
	b.med.contactGone(keys)
}

// mediaIP is the address a local phone at phone is told to send its media to: the relay's
// own address when it binds one; else the address the node advertises to that phone in
// its SIP (sip.advertise when it is an IP address, else the interface towards the phone,
// from the bridge's cached route lookups); else what the relay finds itself.
func (b *Bridge) mediaIP(phone netip.Addr) netip.Addr {
	r := b.cfg.media
	if a := r.Addr(); !a.IsUnspecified() {
		return a
	}
	if b.addrs != nil && phone.IsValid() {
		host, _ := b.addrs.advertised("udp", netip.AddrPortFrom(phone, 9).String())
		if ip, ok := addrIP(host); ok && !ip.IsUnspecified() && ip.Is4() == phone.Is4() {
			return ip
		}
	}
	return r.Advertise(phone)
}
