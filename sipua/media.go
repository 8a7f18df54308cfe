package sipua

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	sdp "github.com/pion/sdp/v3"
)

// The UA's media: it offers and answers real SDP (pion/sdp), and for each accepted m-line
// sends RTP every 20 ms from the socket it receives on (symmetric RTP) — a 440 Hz tone in
// G.711 µ-law (PCMU) for audio, 1000 bytes of filler with payload type 96 for video — and
// counts what it sends and receives (Call.Media). It does not send RTCP.

// MediaStats are the RTP packets of one m-line of a call.
type MediaStats struct {
	Kind string // "audio" or "video"
	// Local is the UA's RTP address, Remote where it sends (from the other side's SDP).
	Local, Remote string
	// SDPPort is the RTP port the UA's SDP names: Local's port, unless WithUASDPPortOffset.
	SDPPort int
	// Direction is the UA's side of the negotiated direction: "sendrecv", "sendonly",
	// "recvonly", "inactive", or "rejected" (port 0).
	Direction string
	// Sent and Received count RTP packets; Received counts only valid RTP.
	Sent, Received uint64
	// MaxGap is the longest time between two packets received.
	MaxGap time.Duration
	// FirstReceived and LastReceived are the times of the first and the last packet.
	FirstReceived, LastReceived time.Time
}

const (
	rtpInterval  = 20 * time.Millisecond
	pcmuFrame    = 160 // samples of 20 ms at 8 kHz
	videoPayload = 1000
	videoPT      = 96
)

// uaStream is one m-line of a call at the UA.
type uaStream struct {
	kind string
	pt   uint8
	conn *net.UDPConn
	port int // the port in the UA's SDP

	mu       sync.Mutex
	remote   netip.AddrPort
	dir      string // the UA's direction
	send     bool   // the negotiated direction lets the UA send
	rejected bool
	first    time.Time
	last     time.Time
	maxGap   time.Duration

	ssrc   uint32
	seq    uint16
	ts     uint32
	sample int // audio: samples generated so far
	sent   atomic.Uint64
	recv   atomic.Uint64
}

// callMedia is the media of one call at the UA.
type callMedia struct {
	u       *UA
	ip      netip.Addr
	sessID  uint64
	mu      sync.Mutex
	version uint64
	streams []*uaStream
	started bool
	stopped bool
	quit    chan struct{}
}

func (u *UA) newCallMedia(kinds ...string) (*callMedia, error) {
	ip := u.laddr.IP
	addr, _ := netip.AddrFromSlice(ip)
	addr = addr.Unmap()
	if !addr.IsValid() || addr.IsUnspecified() {
		addr = localIPToward(u.proxy)
	}
	m := &callMedia{u: u, ip: addr, sessID: rand.Uint64() >> 2, version: 1, quit: make(chan struct{})}
	for _, k := range kinds {
		if _, err := m.addStream(k); err != nil {
			m.stop()
			return nil, err
		}
	}
	return m, nil
}

// localIPToward is the local address the system sends to hostport from.
func localIPToward(hostport string) netip.Addr {
	c, err := net.Dial("udp", hostport)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

func (m *callMedia) addStream(kind string) (*uaStream, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(m.ip, 0)))
	if err != nil {
		return nil, fmt.Errorf("sipua: ua rtp socket: %w", err)
	}
	st := &uaStream{kind: kind, conn: c, port: c.LocalAddr().(*net.UDPAddr).Port + m.u.cfg.sdpPortOffset,
		ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts: rand.Uint32(), dir: "sendrecv"}
	if kind == "video" {
		st.pt = videoPT
	}
	m.mu.Lock()
	m.streams = append(m.streams, st)
	started := m.started
	m.mu.Unlock()
	if started {
		m.spawnRecv(st)
	}
	return st, nil
}

// offer is an SDP offer of the call's streams with direction dir.
func (m *callMedia) offer(dir string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range m.streams {
		st.mu.Lock()
		st.dir = dir
		st.mu.Unlock()
	}
	return m.sdpLocked()
}

func (m *callMedia) sdpLocked() []byte {
	m.version++
	addrType := "IP4"
	if m.ip.Is6() {
		addrType = "IP6"
	}
	ip := m.ip.String()
	sd := &sdp.SessionDescription{
		Origin: sdp.Origin{Username: "hiersip", SessionID: m.sessID, SessionVersion: m.version,
			NetworkType: "IN", AddressType: addrType, UnicastAddress: ip},
		SessionName:           "hiersip",
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: ip}},
		TimeDescriptions:      []sdp.TimeDescription{{}},
	}
	for _, st := range m.streams {
		st.mu.Lock()
		port, dir := st.port, st.dir
		if st.rejected {
			port = 0
		}
		st.mu.Unlock()
		md := &sdp.MediaDescription{MediaName: sdp.MediaName{Media: st.kind, Port: sdp.RangedPort{Value: port},
			Protos: []string{"RTP", "AVP"}, Formats: []string{strconv.Itoa(int(st.pt))}}}
		if st.kind == "video" {
			md.WithValueAttribute("rtpmap", "96 VP8/90000")
		} else {
			md.WithValueAttribute("rtpmap", "0 PCMU/8000")
		}
		md.WithPropertyAttribute(dir)
		sd.WithMedia(md)
	}
	b, _ := sd.Marshal()
	return b
}

// direction of an m-line (sendrecv when none is given).
func direction(sd *sdp.SessionDescription, md *sdp.MediaDescription) string {
	for _, as := range [][]sdp.Attribute{md.Attributes, sd.Attributes} {
		for _, a := range as {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				return a.Key
			}
		}
	}
	return "sendrecv"
}

func mirror(dir string) string {
	switch dir {
	case "sendonly":
		return "recvonly"
	case "recvonly":
		return "sendonly"
	}
	return dir
}

// canSend reports whether the UA may send with its direction mine when the other side's is theirs.
func canSend(mine, theirs string) bool {
	return (mine == "sendrecv" || mine == "sendonly") && (theirs == "sendrecv" || theirs == "recvonly")
}

// remoteOf is the address an m-line receives on.
func remoteOf(sd *sdp.SessionDescription, md *sdp.MediaDescription) netip.AddrPort {
	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	if ci == nil || ci.Address == nil || md.MediaName.Port.Value <= 0 || md.MediaName.Port.Value > 65535 {
		return netip.AddrPort{}
	}
	ip, err := netip.ParseAddr(ci.Address.Address)
	if err != nil || ip.IsUnspecified() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(md.MediaName.Port.Value))
}

var errBadSDP = errors.New("sipua: bad SDP")

// answer answers an SDP offer: a stream per offered audio or video m-line (others
// rejected), the direction mirrored.
func (m *callMedia) answer(offer []byte) ([]byte, error) {
	sd, err := parseSDP(offer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadSDP, err)
	}
	for i, md := range sd.MediaDescriptions {
		m.mu.Lock()
		var st *uaStream
		if i < len(m.streams) {
			st = m.streams[i]
		}
		m.mu.Unlock()
		if st == nil {
			kind := md.MediaName.Media
			if kind != "audio" && kind != "video" {
				kind = "audio" // a placeholder, rejected below
			}
			if st, err = m.addStream(kind); err != nil {
				return nil, err
			}
		}
		theirs := direction(sd, md)
		st.mu.Lock()
		st.remote = remoteOf(sd, md)
		st.rejected = md.MediaName.Port.Value == 0 || md.MediaName.Media != st.kind
		st.dir = mirror(theirs)
		st.send = !st.rejected && canSend(st.dir, theirs) && st.remote.IsValid()
		st.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sdpLocked(), nil
}

// applyAnswer applies the other side's answer to the UA's offer.
func (m *callMedia) applyAnswer(ans []byte) error {
	sd, err := parseSDP(ans)
	if err != nil {
		return fmt.Errorf("%w: %w", errBadSDP, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, st := range m.streams {
		st.mu.Lock()
		if i >= len(sd.MediaDescriptions) {
			st.rejected, st.send = true, false
			st.mu.Unlock()
			continue
		}
		md := sd.MediaDescriptions[i]
		st.remote = remoteOf(sd, md)
		st.rejected = md.MediaName.Port.Value == 0
		st.send = !st.rejected && canSend(st.dir, direction(sd, md)) && st.remote.IsValid()
		st.mu.Unlock()
	}
	return nil
}

// start starts sending and receiving (idempotent).
func (m *callMedia) start() {
	m.mu.Lock()
	if m.started || m.stopped || m.u.cfg.silent {
		m.mu.Unlock()
		return
	}
	m.started = true
	streams := append([]*uaStream(nil), m.streams...)
	m.mu.Unlock()
	for _, st := range streams {
		m.spawnRecv(st)
	}
	m.u.spawn(m.sendLoop)
}

func (m *callMedia) spawnRecv(st *uaStream) {
	st.mu.Lock()
	conn := st.conn
	st.mu.Unlock()
	m.u.spawn(func() { st.recvLoop(conn) })
}

// stop closes the call's sockets (idempotent; nil-safe).
func (m *callMedia) stop() {
	if m == nil {
		return
	}
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	m.stopped = true
	close(m.quit)
	streams := m.streams
	m.mu.Unlock()
	for _, st := range streams {
		st.mu.Lock()
		_ = st.conn.Close()
		st.mu.Unlock()
	}
}

func (m *callMedia) sendLoop() {
	t := time.NewTicker(rtpInterval)
	defer t.Stop()
	buf := make([]byte, 1500)
	for {
		select {
		case <-m.quit:
			return
		case <-m.u.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		streams := append([]*uaStream(nil), m.streams...)
		m.mu.Unlock()
		for _, st := range streams {
			st.sendOne(buf)
		}
	}
}

func (st *uaStream) sendOne(buf []byte) {
	st.mu.Lock()
	if !st.send {
		st.mu.Unlock()
		return
	}
	dst, conn := st.remote, st.conn
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: st.pt, SequenceNumber: st.seq, Timestamp: st.ts, SSRC: st.ssrc}}
	if st.kind == "video" {
		pkt.Payload = make([]byte, videoPayload)
		st.ts += 90000 / 50
	} else {
		payload := make([]byte, pcmuFrame)
		for i := range payload {
			v := 0.3 * math.Sin(2*math.Pi*440*float64(st.sample)/8000)
			payload[i] = linearToULaw(int(v * 32767))
			st.sample++
		}
		pkt.Payload = payload
		st.ts += pcmuFrame
	}
	st.seq++
	st.mu.Unlock()
	n, err := pkt.MarshalTo(buf)
	if err != nil {
		return
	}
	if _, err := conn.WriteToUDPAddrPort(buf[:n], dst); err == nil {
		st.sent.Add(1)
	}
}

func (st *uaStream) recvLoop(conn *net.UDPConn) {
	buf := make([]byte, 2048)
	var pkt rtp.Packet
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if pkt.Unmarshal(buf[:n]) != nil || pkt.Version != 2 {
			continue
		}
		now := time.Now()
		st.mu.Lock()
		if !st.last.IsZero() {
			st.maxGap = max(st.maxGap, now.Sub(st.last))
		} else {
			st.first = now
		}
		st.last = now
		st.mu.Unlock()
		st.recv.Add(1)
	}
}

// renew moves every active stream to a new socket (a new port in the next SDP).
func (m *callMedia) renew() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range m.streams {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(m.ip, 0)))
		if err != nil {
			return fmt.Errorf("sipua: ua rtp socket: %w", err)
		}
		st.mu.Lock()
		old := st.conn
		st.conn, st.port = c, c.LocalAddr().(*net.UDPAddr).Port+m.u.cfg.sdpPortOffset
		st.mu.Unlock()
		_ = old.Close()
		if m.started && !m.stopped {
			m.spawnRecv(st)
		}
	}
	return nil
}

func (m *callMedia) stats() []MediaStats {
	m.mu.Lock()
	streams := append([]*uaStream(nil), m.streams...)
	m.mu.Unlock()
	out := make([]MediaStats, 0, len(streams))
	for _, st := range streams {
		st.mu.Lock()
		ms := MediaStats{Kind: st.kind, Local: st.conn.LocalAddr().String(), SDPPort: st.port, Direction: st.dir,
			MaxGap: st.maxGap, FirstReceived: st.first, LastReceived: st.last}
		if st.remote.IsValid() {
			ms.Remote = st.remote.String()
		}
		if st.rejected {
			ms.Direction = "rejected"
		}
		st.mu.Unlock()
		ms.Sent, ms.Received = st.sent.Load(), st.recv.Load()
		out = append(out, ms)
	}
	return out
}

// linearToULaw encodes a 16-bit linear sample in G.711 µ-law.
func linearToULaw(sample int) byte {
	const bias, clip = 0x84, 32635
	sign := 0
	if sample < 0 {
		sign, sample = 0x80, -sample
	}
	sample = min(sample, clip) + bias
	exp := bits.Len(uint(sample>>7)) - 1
	if exp < 0 {
		exp = 0
	}
	mant := (sample >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// kinds are the streams the UA offers.
func (u *UA) kinds() []string {
	if u.cfg.video {
		return []string{"audio", "video"}
	}
	return []string{"audio"}
}

// spawn runs f in a goroutine of the UA; false (f not run) once the UA is closing.
func (u *UA) spawn(f func()) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return false
	}
	u.wg.Add(1)
	go func() { defer u.wg.Done(); f() }()
	return true
}

// addCall makes c findable by its Call-ID (in-dialog offers, answers in ACKs).
func (u *UA) addCall(c *Call) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed && len(u.calls) < 4096 {
		u.calls[c.CallID] = c
	}
}

func (u *UA) callByID(id string) *Call {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[id]
}

// track starts c's media and ends it with the call.
func (u *UA) track(c *Call) {
	u.addCall(c)
	c.media.start()
	c.watch.Do(func() {
		quit := c.media.quit
		u.spawn(func() {
			select {
			case <-c.Done():
			case <-quit:
			case <-u.ctx.Done():
			}
			c.end()
		})
	})
}

// end stops c's media and forgets it.
func (c *Call) end() {
	c.media.stop()
	u := c.ua
	u.mu.Lock()
	if u.calls[c.CallID] == c {
		delete(u.calls, c.CallID)
	}
	u.mu.Unlock()
}

// stopMedia stops the media of every call (Close).
func (u *UA) stopMedia() {
	u.mu.Lock()
	calls := slices.Collect(maps.Values(u.calls))
	u.mu.Unlock()
	for _, c := range calls {
		c.media.stop()
	}
}

// answerMedia prepares the media of an incoming call: the answer to its offer, or an
// offer of its own when the INVITE has none. code is 488 when the offer is unusable.
func (u *UA) answerMedia(req *sip.Request) (*callMedia, []byte, int) {
	var kinds []string // with an offer, answer creates the streams it offers
	if !hasSDP(req) {
		kinds = u.kinds()
	}
	cm, err := u.newCallMedia(kinds...)
	if err != nil {
		return nil, nil, 500
	}
	if !hasSDP(req) {
		return cm, cm.offer("sendrecv"), 0
	}
	body, err := cm.answer(req.Body())
	if err != nil {
		cm.stop()
		return nil, nil, 488
	}
	return cm, body, 0
}

// onAckSDP applies an answer carried by an ACK (late offer).
func (u *UA) onAckSDP(req *sip.Request) {
	if !hasSDP(req) || req.CallID() == nil {
		return
	}
	if c := u.callByID(req.CallID().Value()); c != nil {
		_ = c.media.applyAnswer(req.Body())
	}
}

// answerInDialog answers a re-INVITE: with the answer to its offer, or with an offer of
// the UA's (answered in the ACK) when it has none.
func (u *UA) answerInDialog(req *sip.Request, tx sip.ServerTransaction) {
	c := u.callByID(req.CallID().Value())
	var body []byte
	switch {
	case c == nil:
	case hasSDP(req):
		var err error
		if body, err = c.media.answer(req.Body()); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
			return
		}
	default:
		body = c.media.offer("sendrecv")
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	if body != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	res.AppendHeader(&u.contact)
	_ = tx.Respond(res)
}

// onUpdate answers an UPDATE, with an SDP answer when it carries an offer.
func (u *UA) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	var body []byte
	if c := u.callByID(req.CallID().Value()); c != nil && hasSDP(req) {
		var err error
		if body, err = c.media.answer(req.Body()); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
			return
		}
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	if body != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	_ = tx.Respond(res)
}

// Media reports the RTP the UA sent and received on each m-line of the call.
func (c *Call) Media() []MediaStats {
	if c.media == nil {
		return nil
	}
	return c.media.stats()
}

// Hold puts the call on hold: a re-INVITE offering sendonly (the other side answers
// recvonly and stops sending). Only the calling side can send re-INVITEs.
func (c *Call) Hold(ctx context.Context) (*sip.Response, error) {
	return c.Reoffer(ctx, sip.INVITE, "sendonly", false)
}

// Resume takes the call off hold: a re-INVITE offering sendrecv.
func (c *Call) Resume(ctx context.Context) (*sip.Response, error) {
	return c.Reoffer(ctx, sip.INVITE, "sendrecv", false)
}

// Reoffer sends a new SDP offer with direction dir ("sendrecv", "sendonly", "recvonly",
// "inactive") in a re-INVITE (sip.INVITE; calling side only) or an UPDATE (sip.UPDATE;
// either side), with newPort on fresh RTP ports, and applies the answer.
func (c *Call) Reoffer(ctx context.Context, method sip.RequestMethod, dir string, newPort bool) (*sip.Response, error) {
	switch {
	case method == sip.INVITE && c.cs == nil:
		return nil, fmt.Errorf("%w: re-INVITE from the answering side is not supported", ErrBadOption)
	case method != sip.INVITE && method != sip.UPDATE:
		return nil, fmt.Errorf("%w: an offer goes in INVITE or UPDATE, not %s", ErrBadOption, method)
	}
	switch dir {
	case "sendrecv", "sendonly", "recvonly", "inactive":
	default:
		return nil, fmt.Errorf("%w: direction %q", ErrBadOption, dir)
	}
	if newPort {
		if err := c.media.renew(); err != nil {
			return nil, err
		}
	}
	req := sip.NewRequest(method, c.remoteTarget())
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(c.media.offer(dir))
	var res *sip.Response
	var err error
	if c.cs != nil {
		res, err = c.cs.Do(ctx, req)
	} else {
		res, err = c.ss.Do(ctx, req)
	}
	if err != nil || !res.IsSuccess() {
		return res, err
	}
	if hasSDP(res) {
		if err := c.media.applyAnswer(res.Body()); err != nil {
			return res, err
		}
	}
	if method == sip.INVITE {
		return res, c.cs.WriteRequest(sip.NewRequest(sip.ACK, c.remoteTarget()))
	}
	return res, nil
}

// ackFor is the ACK of a 2xx answer to inv (RFC 3261 §13.2.2.4), with body (an SDP answer
// to a late offer) or none.
func ackFor(inv *sip.Request, res *sip.Response, body []byte) *sip.Request {
	target := &inv.Recipient
	if ct := res.Contact(); ct != nil {
		target = &ct.Address
	}
	ack := sip.NewRequest(sip.ACK, *target.Clone())
	ack.SipVersion = inv.SipVersion
	for _, h := range []sip.Header{inv.From(), res.To(), inv.CallID()} {
		if h != nil {
			ack.AppendHeader(sip.HeaderClone(h))
		}
	}
	if cs := inv.CSeq(); cs != nil {
		ack.AppendHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: sip.ACK})
	}
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	if ct := inv.Contact(); ct != nil {
		ack.AppendHeader(sip.HeaderClone(ct))
	}
	if body != nil {
		ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	ack.SetBody(body)
	ack.SetTransport(inv.Transport())
	ack.SetSource(inv.Source())
	ack.Laddr = inv.Laddr
	return ack
}
