// Package media is a hiersip node's media relay. The two end nodes of a call — the node
// of the calling phone and the node of the called phone, never the proxies between them —
// anchor the call's media: each gives its own phone a UDP port pair of its own (by
// rewriting the SDP the phone sees, in package sipbridge), and the two nodes carry the
// phones' RTP and RTCP between themselves over libp2p, on the same connections SIP uses:
// direct after hole punching, through a circuit relay otherwise. Phones behind NATs that
// cannot reach each other therefore hear each other.
//
//	phone A ──UDP──▶ node A ═══ /hiersip/media/1.0.0 (libp2p: direct or relayed) ═══▶ node B ──UDP──▶ phone B
//	        ◀──────         ◀═══════════════════════════════════════════════════════         ◀──────
//
// # Usage
//
//	r, err := media.New(h, media.WithPorts(10000, 20000), media.WithAddress(ip))
//	defer r.Close()
//	s, err := r.Open(media.Key{CallID: callID, Index: 0}, "")   // a port pair for m-line 0
//	rtp, rtcp := s.Ports()                                        // put these in the phone's SDP
//	s.SetPhone(phoneRTP, phoneRTCP, phoneSIPSourceIP)             // from the phone's SDP and SIP
//	s.SetRemote(otherNode)                                        // the other end node
//	...
//	s.Close()                                                     // BYE, CANCEL, failure
//
// # Sessions
//
// A session is one m-line of one call at one node: an even UDP port for RTP and the next
// for RTCP (rtcp-mux works unchanged: RTCP then arrives on the RTP port and leaves by it).
// Both end nodes derive the session's ID from the Call-ID and the m-line's index
// (SessionIDOf), so nothing is negotiated between them. Payloads are carried as they are:
// SRTP (SDES keys in the SDP) and DTLS pass untouched.
//
// Towards its phone a session latches (symmetric RTP): it sends to the address the phone's
// packets come from, so that a phone behind a NAT on its LAN still hears audio. It never
// sends to an address only a message named: the source must have an IP the caller allowed
// (Session.SetPhone — sipbridge allows the IPs the phone's SIP came from or went to).
// Packets from any other address are dropped and counted (DropStranger). Before the phone
// has sent anything the session sends to the address in the phone's SDP if its IP is
// allowed, and drops otherwise.
//
// A session ends with Close (the call's BYE, CANCEL, failure, or the phone's registration
// gone), when no packet passed either way for the idle timeout (WithTimeouts; the longer
// hold timeout for sessions on hold), or with the relay. The relay holds at most
// WithMaxSessions sessions, and a peer whose offers open sessions at most
// WithMaxSessionsPerPeer of them (Open fails with ErrFull, ErrPeerFull, ErrNoPorts; the
// bridge answers 503). The timeouts follow the relay's clock (WithClock, the type of
// go-libp2p's connection manager); a packet's age and network deadlines follow the system
// clock, since the network runs in real time.
//
// # Between nodes
//
// Protocol "/hiersip/media/1.0.0" carries frames back to back: a 2-byte length, the 8-byte
// session ID, a flags byte (RTCP port; control traffic) and one packet. Each node opens one
// stream to each peer it sends to (network.WithAllowLimitedConn, so relayed connections
// work) and reads the streams peers open to it; all the sessions between two nodes share
// them. A frame is delivered only to a session whose other end node is the stream's peer
// (else DropWrongPeer): only the two end nodes of a call can feed its session. A frame
// with a bad length or unknown flags resets the stream.
//
// One writer goroutine per peer drains a queue into its stream, one Write per batch. The
// queue is bounded in bytes (WithQueueBytes: the oldest audio is dropped first, RTCP
// kept) and in time: a packet that waited longer than WithMaxDelay is dropped rather than
// sent late (RTCP may wait ten times as long), so a stream that backs up loses audio
// instead of adding seconds of delay. Below the queue, the transport's own buffers (yamux
// and TCP windows, QUIC streams) still hold what was written; a Write that blocks for 2 s
// resets the stream.
//
// When a stream breaks — a circuit relay ended the connection at its limits, or the
// connection was closed — the writer opens a new stream on the next batch, on an open
// connection or a new one (libp2p dials directly or through a relay). When the stream runs
// on a relayed connection and a direct one to the peer appears (hole punching), the writer
// moves to a new stream, which libp2p opens on the direct connection, and half-closes the
// old one. Packets queued meanwhile wait (bounded as above); a gap of a few packets is the
// cost of a cut.
//
// # Security
//
// Who can make a node send what:
//   - a phone: only to the other end node of its call, only what it sends itself;
//   - the other end node: only to the phone of a session whose remote it is, at the address
//     the phone uses (latched) or an SDP address on the phone's SIP IP; never elsewhere;
//   - any other peer: nothing — its frames are dropped (unknown session, wrong peer), and it
//     may hold at most 8 media streams to a node (more are reset);
//   - an address on the Internet that sends to a session's port: nothing (DropStranger).
//
// Every queue, map and stream is bounded: sessions, sessions per peer, port range,
// queued bytes per peer, inbound streams per peer, frame size (MaxPacket).
package media
