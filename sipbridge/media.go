package sipbridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
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

// mediaCall is what an end node keeps of one call's media.
type mediaCall struct {
	mu       sync.Mutex
	id       string
	created  time.Time
	ips      []netip.Addr // the local phone's SIP addresses: the only ones media may go to
	contact  string       // the local phone's contact (uriAddrKey), to end with its registration
	remote   peer.ID      // the other end node
	sessions []*media.Session
	off      bool // not anchored: SDP passes untouched (anchor attributes removed)
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
	for _, s := range c.sessions {
		if s != nil && !s.Closed() {
			return true
		}
	}
	return false
}

func (c *mediaCall) closeAll() {
	c.mu.Lock()
	ss := c.sessions
	c.sessions = nil
	c.mu.Unlock()
	for _, s := range ss {
		if s != nil {
			s.Close()
		}
	}
}

// turnOff stops anchoring the call (under c.mu).
func (c *mediaCall) turnOffLocked() {
	c.off = true
	for _, s := range c.sessions {
		if s != nil {
			s.Close()
		}
	}
	c.sessions = nil
}

// session returns the open session of m-line i, opening one when needed (under c.mu).
func (c *mediaCall) sessionLocked(r *media.Relay, i int, remote peer.ID) (*media.Session, error) {
	for len(c.sessions) <= i {
		c.sessions = append(c.sessions, nil)
	}
	if s := c.sessions[i]; s != nil && !s.Closed() {
		if remote != "" && s.Remote() == "" {
			if err := s.SetRemote(remote); err != nil {
				return nil, err
			}
		}
		return s, nil
	}
	s, err := r.Open(media.Key{CallID: c.id, Index: i}, remote)
	if err != nil {
		return nil, err
	}
	c.sessions[i] = s
	return s, nil
}

func (c *mediaCall) closeSessionLocked(i int) {
	if i < len(c.sessions) && c.sessions[i] != nil {
		c.sessions[i].Close()
		c.sessions[i] = nil
	}
}

// addIP notes an address of the local phone's SIP (under c.mu).
func (c *mediaCall) addIPLocked(ip netip.Addr) {
	if ip = ip.Unmap(); ip.IsValid() && !ip.IsUnspecified() && !slices.Contains(c.ips, ip) && len(c.ips) < 8 {
		c.ips = append(c.ips, ip)
	}
}

// fromPhone processes an SDP the local phone sent into the overlay; src is the IP its SIP
// came from.
func (b *Bridge) fromPhone(c *mediaCall, m sip.Message, src netip.Addr) error {
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
		setSDP(m, sd, b.selfStr)
		return nil
	}
	c.addIPLocked(src)
	for i, st := range streamsOf(sd) {
		if st.port == 0 {
			c.closeSessionLocked(i)
			continue
		}
		s, err := c.sessionLocked(b.cfg.media, i, "")
		if err != nil {
			return err
		}
		s.SetPhone(st.rtp, st.rtcp, c.ips...)
		s.SetHold(st.hold)
	}
	setSDP(m, sd, b.selfStr)
	return nil
}

// toPhone rewrites an SDP from the other end node for the local phone; dst is the IP the
// node sends the phone's SIP to (invalid when not known here).
func (b *Bridge) toPhone(c *mediaCall, m sip.Message, dst netip.Addr) error {
	sd, err := parseSDP(m.Body())
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		b.log.Debug("media: unparsable SDP from the overlay, not anchoring", "call", c.id, "err", err)
		c.turnOffLocked()
		return nil
	}
	anchor, ok := anchorOf(sd)
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
	if c.remote == "" {
		c.remote = anchor
	} else if c.remote != anchor {
		b.log.Debug("media: anchor of another node ignored", "call", c.id, "anchor", anchor, "remote", c.remote)
	}
	c.addIPLocked(dst)
	streams := streamsOf(sd)
	ports := make([][2]int, len(streams))
	for i, st := range streams {
		if st.port == 0 {
			c.closeSessionLocked(i)
			continue
		}
		s, err := c.sessionLocked(b.cfg.media, i, c.remote)
		if err != nil {
			return err
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
	if initial {
		c.mu.Lock()
		if toOverlay {
			if ct := req.Contact(); ct != nil {
				c.contact = uriAddrKey(&ct.Address)
			}
		} else {
			c.contact = uriAddrKey(h.uri)
			c.addIPLocked(hostIP(fwd.Destination()))
		}
		c.mu.Unlock()
	}
	if !hasSDP(fwd) {
		return 0, ""
	}
	if toOverlay {
		err = b.fromPhone(c, fwd, hostIP(req.Source()))
	} else {
		err = b.toPhone(c, fwd, netip.Addr{})
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
	if initial {
		b.med.end(callID)
	}
	return 503, fmt.Sprintf("Service Unavailable: no media resources (%v)", err)
}

// mediaResponse anchors the SDP of out, a response this node relays upstream, at an end node.
// fromUA: the response comes from a local UA (else a peer); toPeer: it goes to a peer
// (else to the local UA req came from).
func (b *Bridge) mediaResponse(req *sip.Request, res, out *sip.Response, fromUA, toPeer bool) {
	if b.cfg.media == nil || req.CallID() == nil || res.StatusCode <= 100 || res.StatusCode >= 300 || !hasSDP(out) {
		return
	}
	switch {
	case fromUA && toPeer:
		b.mediaAnswer(req.CallID().Value(), out, true, hostIP(res.Source()))
	case !fromUA && !toPeer:
		b.mediaAnswer(req.CallID().Value(), out, false, hostIP(req.Source()))
	}
}

// mediaStray anchors the SDP of a 2xx retransmission forwarded statelessly.
func (b *Bridge) mediaStray(res, out *sip.Response, toPeer bool) {
	if b.cfg.media == nil || res.CallID() == nil || !hasSDP(out) {
		return
	}
	b.mediaAnswer(res.CallID().Value(), out, toPeer, hostIP(res.Source()))
}

func (b *Bridge) mediaAnswer(callID string, out *sip.Response, toOverlay bool, ip netip.Addr) {
	c, _ := b.med.get(callID, false)
	if c == nil {
		return
	}
	var err error
	if toOverlay {
		err = b.fromPhone(c, out, ip)
	} else {
		err = b.toPhone(c, out, ip)
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
