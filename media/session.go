package media

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Components of a session: the RTP port and the RTCP port.
const (
	RTP  = 0
	RTCP = 1
)

// Session is one anchored media stream (one m-line of one call) at one end node: a pair
// of UDP ports facing the node's phone and the other end node that receives what the
// phone sends and sends what the other phone sent.
//
// Towards the phone it latches (symmetric RTP): it sends to the address RTP and RTCP
// arrive from, but only if that address's IP is one the caller allowed (SetPhone: the IP
// the phone's SIP came from or went to). Packets from other addresses are dropped
// (DropStranger): the relay never sends to an address a message merely named. Before the
// phone has sent anything, the relay sends to the address of its SDP when that address's
// IP is allowed, and drops otherwise (DropNotLatched).
type Session struct {
	r     *Relay
	key   Key
	id    SessionID
	conns [2]*net.UDPConn
	ports [2]int

	mu      sync.Mutex
	remote  peer.ID
	link    *link
	sdp     [2]netip.AddrPort // the phone's addresses from its SDP
	latched [2]netip.AddrPort // where the phone's packets come from
	allowed []netip.Addr
	closed  bool

	hold      atomic.Bool
	active    atomic.Int64 // unix nanoseconds of the last packet, either way
	opened    time.Time
	toPeer    atomic.Uint64
	toPeerB   atomic.Uint64
	toPhone   atomic.Uint64
	toPhoneB  atomic.Uint64
	closeOnce sync.Once
}

func newSession(r *Relay, key Key, id SessionID, rtp, rtcp *net.UDPConn) *Session {
	s := &Session{r: r, key: key, id: id, conns: [2]*net.UDPConn{rtp, rtcp}, opened: r.cfg.clock.Now()}
	for i, c := range s.conns {
		s.ports[i] = c.LocalAddr().(*net.UDPAddr).Port
		_ = c.SetReadBuffer(256 << 10)
		_ = c.SetWriteBuffer(256 << 10)
	}
	s.active.Store(s.opened.UnixNano())
	return s
}

// Key is the session's call and m-line.
func (s *Session) Key() Key { return s.key }

// ID is the session's ID on the wire.
func (s *Session) ID() SessionID { return s.id }

// Ports are the session's phone-facing RTP and RTCP ports.
func (s *Session) Ports() (rtp, rtcp int) { return s.ports[0], s.ports[1] }

// Remote is the other end node ("" until known).
func (s *Session) Remote() peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remote
}

// SetRemote sets the other end node: only it may feed the session, and the session sends
// what the phone sends to it. It cannot change once set (ErrRemoteChanged).
func (s *Session) SetRemote(p peer.ID) error {
	r := s.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return r.setRemoteLocked(s, p)
}

// SetPhone sets the phone's addresses from its SDP (the RTCP address may be invalid: RTP
// port + 1 is assumed) and the IPs the session may send to: those of the phone's SIP.
func (s *Session) SetPhone(rtp, rtcp netip.AddrPort, allowed ...netip.Addr) {
	if !rtcp.IsValid() && rtp.IsValid() {
		rtcp = netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sdp = [2]netip.AddrPort{unmapAP(rtp), unmapAP(rtcp)}
	s.allowLocked(allowed)
}

// Allow adds IPs the session may send to: those of the phone's SIP.
func (s *Session) Allow(ips ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allowLocked(ips)
}

func (s *Session) allowLocked(allowed []netip.Addr) {
	for _, a := range allowed {
		if a = a.Unmap(); a.IsValid() && !slices.Contains(s.allowed, a) {
			if len(s.allowed) >= 8 {
				s.allowed = s.allowed[1:]
			}
			s.allowed = append(s.allowed, a)
		}
	}
}

// SetHold marks the session as on hold (inactive, or c=0.0.0.0): it then lives for the
// hold timeout without packets rather than the idle timeout.
func (s *Session) SetHold(on bool) { s.hold.Store(on) }

// Closed reports whether the session was closed (by Close, the idle timeout or the relay).
func (s *Session) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close closes the session's sockets and frees its ports. It is idempotent.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.r.remove(s)
		s.r.log.Debug("session closed", "call", s.key.CallID, "m", s.key.Index)
	})
}

func unmapAP(a netip.AddrPort) netip.AddrPort {
	if !a.IsValid() {
		return a
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// readPhone reads what the phone sends on component comp and queues it for the remote node.
func (s *Session) readPhone(conn *net.UDPConn, comp int) {
	buf := make([]byte, MaxPacket+1)
	r := s.r
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if s.Closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors and the like
		}
		if n > MaxPacket {
			r.stats.drop(DropOversize)
			continue
		}
		s.fromPhone(comp, buf[:n], unmapAP(src))
	}
}

func (s *Session) fromPhone(comp int, p []byte, src netip.AddrPort) {
	r := s.r
	s.mu.Lock()
	if !slices.Contains(s.allowed, src.Addr()) {
		s.mu.Unlock()
		r.stats.drop(DropStranger)
		return
	}
	s.latched[comp] = src
	l := s.link
	s.mu.Unlock()
	if l == nil {
		r.stats.drop(DropNoRemote)
		return
	}
	s.active.Store(r.cfg.clock.Now().UnixNano())
	flags := byte(0)
	if comp == RTCP {
		flags |= flagRTCPPort | flagControl
	} else if isRTCP(p) {
		flags |= flagControl
	}
	l.enqueue(s.id, flags, p, r.cfg.stamp())
	s.toPeer.Add(1)
	s.toPeerB.Add(uint64(len(p)))
}

// toPhoneFrom sends a packet that peer from sent for the session to the phone.
func (s *Session) toPhoneFrom(from peer.ID, comp int, p []byte) {
	r := s.r
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.remote != from {
		s.mu.Unlock()
		r.stats.drop(DropWrongPeer)
		return
	}
	dst := s.latched[comp]
	if !dst.IsValid() {
		if a := s.sdp[comp]; a.IsValid() && a.Port() != 0 && slices.Contains(s.allowed, a.Addr()) {
			dst = a
		}
	}
	conn := s.conns[comp]
	s.mu.Unlock()
	if !dst.IsValid() {
		r.stats.drop(DropNotLatched)
		return
	}
	if _, err := conn.WriteToUDPAddrPort(p, dst); err != nil {
		r.stats.drop(DropSendFailed)
		return
	}
	s.active.Store(r.cfg.clock.Now().UnixNano())
	s.toPhone.Add(1)
	s.toPhoneB.Add(uint64(len(p)))
	r.stats.toPhone.Add(1)
	r.stats.toPhoneB.Add(uint64(len(p)))
}

// SessionInfo describes a session for status pages.
type SessionInfo struct {
	CallID   string
	Index    int
	ID       string
	RTPPort  int
	RTCPPort int
	// Remote is the other end node; Path is how the media reaches it now: "direct",
	// "relayed" or "none" (no stream open yet).
	Remote string
	Path   string
	// Phone is where the node sends RTP to the phone: the latched address, else the
	// SDP's address ("" when it may send nowhere yet).
	Phone  string
	Hold   bool
	Opened time.Time
	// Last is the time of the last packet either way.
	Last time.Time
	// ToPeer counts the phone's packets sent to the other node, ToPhone the other node's
	// packets sent to the phone.
	ToPeer, ToPeerBytes, ToPhone, ToPhoneBytes uint64
}

// Info describes the session.
func (s *Session) Info() SessionInfo {
	s.mu.Lock()
	in := SessionInfo{CallID: s.key.CallID, Index: s.key.Index, ID: s.id.String(), RTPPort: s.ports[0], RTCPPort: s.ports[1],
		Remote: s.remote.String(), Path: "none", Hold: s.hold.Load(), Opened: s.opened, Last: time.Unix(0, s.active.Load())}
	if s.remote == "" {
		in.Remote = ""
	}
	if a := s.latched[0]; a.IsValid() {
		in.Phone = a.String()
	} else if a := s.sdp[0]; a.IsValid() && slices.Contains(s.allowed, a.Addr()) {
		in.Phone = a.String()
	}
	l := s.link
	s.mu.Unlock()
	if l != nil {
		in.Path = l.path()
	}
	in.ToPeer, in.ToPeerBytes = s.toPeer.Load(), s.toPeerB.Load()
	in.ToPhone, in.ToPhoneBytes = s.toPhone.Load(), s.toPhoneB.Load()
	return in
}

// Sessions describes the relay's sessions, oldest first.
func (r *Relay) Sessions() []SessionInfo {
	r.mu.RLock()
	ss := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		ss = append(ss, s)
	}
	r.mu.RUnlock()
	out := make([]SessionInfo, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.Info())
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if c := a.Opened.Compare(b.Opened); c != 0 {
			return c
		}
		if a.CallID != b.CallID {
			if a.CallID < b.CallID {
				return -1
			}
			return 1
		}
		return a.Index - b.Index
	})
	return out
}
