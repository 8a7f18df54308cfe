package sipbridge

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ConnLimits bounds the connections and streams that user agents and other nodes can hold
// open, and for how long. Every field has a default (DefaultConnLimits); a zero field takes
// it.
type ConnLimits struct {
	// MessageTimeout: once the first byte of a message has arrived on a UA-facing TCP
	// connection or a /hiersip/sip/1.0.0 stream, the whole message must arrive within it;
	// otherwise the connection or stream is closed (a 400 goes back when the header block
	// was whole). Default 10 s.
	MessageTimeout time.Duration
	// TCPIdleTimeout closes a UA-facing TCP connection that carried no message and no
	// keep-alive (CRLF, RFC 5626) for this long. Default 3 min: phones that register over
	// TCP send a keep-alive every 2 min or so.
	TCPIdleTimeout time.Duration
	// StreamIdleTimeout closes an inbound /hiersip/sip/1.0.0 stream that carried no whole
	// message for this long (empty keep-alive lines do not count). A node retires its own
	// outgoing stream to a peer after half this time without writing and opens a new one,
	// so that it never writes on a stream the peer may be closing: give every node of a
	// deployment the same value. Default 2 min.
	StreamIdleTimeout time.Duration
	// MaxTCPPerSource bounds the UA-facing TCP connections of one source IP (an IPv6 /64).
	// Default 128 (an office behind one NAT).
	MaxTCPPerSource int
	// MaxTCP bounds all UA-facing TCP connections together. Default 2048, and never more
	// than a quarter of the process's file-descriptor limit (RLIMIT_NOFILE): the rest stays
	// for libp2p (whose resource manager takes up to half), the admin endpoint and files.
	MaxTCP int
	// MaxStreamsPerPeer bounds the inbound /hiersip/sip/1.0.0 streams of one peer (a node
	// needs one, two while it replaces it). Default 4.
	MaxStreamsPerPeer int
	// MaxStreams bounds the inbound /hiersip/sip/1.0.0 streams of all peers together.
	// Default 1024.
	MaxStreams int
}

// DefaultConnLimits are the connection limits of a bridge without WithConnLimits.
func DefaultConnLimits() ConnLimits {
	return ConnLimits{
		MessageTimeout: 10 * time.Second, TCPIdleTimeout: 3 * time.Minute, StreamIdleTimeout: 2 * time.Minute,
		MaxTCPPerSource: 128, MaxTCP: 2048, MaxStreamsPerPeer: 4, MaxStreams: 1024,
	}
}

// withDefaults fills zero fields from DefaultConnLimits.
func (l ConnLimits) withDefaults() ConnLimits {
	d := DefaultConnLimits()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	seti := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&l.MessageTimeout, d.MessageTimeout)
	set(&l.TCPIdleTimeout, d.TCPIdleTimeout)
	set(&l.StreamIdleTimeout, d.StreamIdleTimeout)
	seti(&l.MaxTCPPerSource, d.MaxTCPPerSource)
	seti(&l.MaxTCP, d.MaxTCP)
	seti(&l.MaxStreamsPerPeer, d.MaxStreamsPerPeer)
	seti(&l.MaxStreams, d.MaxStreams)
	return l
}

// Validate reports negative limits (wrapping ErrBadOption).
func (l ConnLimits) Validate() error {
	if l.MessageTimeout < 0 || l.TCPIdleTimeout < 0 || l.StreamIdleTimeout < 0 || l.MaxTCPPerSource < 0 ||
		l.MaxTCP < 0 || l.MaxStreamsPerPeer < 0 || l.MaxStreams < 0 {
		return fmt.Errorf("%w: negative connection limit", ErrBadOption)
	}
	return nil
}

// WithConnLimits sets the deadlines and caps of connections and streams (see ConnLimits).
func WithConnLimits(l ConnLimits) Option {
	return func(c *config) error {
		if err := l.Validate(); err != nil {
			return err
		}
		c.conns = l.withDefaults()
		return nil
	}
}

// CheckOption reports the error o would make New return, without a host: for configuration
// loaders that want to name the setting at fault before starting anything.
func CheckOption(o Option) error {
	var c config
	return o(&c)
}

// fdShare is the part of RLIMIT_NOFILE that UA-facing TCP connections may take.
const fdShare = 4

// tcpCap is the effective bound on UA-facing TCP connections: max, but at most a quarter of
// nofile (0: unknown).
func tcpCap(limit int, nofile uint64) int {
	if nofile > 0 && uint64(limit) > nofile/fdShare {
		return max(1, int(nofile/fdShare))
	}
	return limit
}

// counter counts holders per key and in total, each bounded.
type counter struct {
	mu       sync.Mutex
	per      map[string]int
	total    int
	maxPer   int
	maxTotal int
}

func newCounter(maxPer, maxTotal int) *counter {
	return &counter{per: map[string]int{}, maxPer: maxPer, maxTotal: maxTotal}
}

// take reserves one place for key; "" when granted, else which bound refused it.
func (c *counter) take(key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.per[key] >= c.maxPer:
		return "per_source"
	case c.total >= c.maxTotal:
		return "total"
	}
	c.per[key]++
	c.total++
	return ""
}

func (c *counter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.per[key]--; c.per[key] <= 0 {
		delete(c.per, key)
	}
	c.total--
}

// ---- UA-facing TCP (transport_tcp.go accepts)

// temporaryAccept reports an accept error after which the listener still works.
func temporaryAccept(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
		return true
	}
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// ---- inbound /hiersip/sip/1.0.0 streams

// admitStream takes a place for an inbound stream of p; false when p or everyone together
// is at the cap (the stream is then reset).
func (b *Bridge) admitStream(p peer.ID) bool {
	if why := b.streams.take(string(p)); why != "" {
		b.lim.stats.streamsRefused.Add(1)
		b.log.Info("refusing SIP stream", "peer", p, "cap", why)
		return false
	}
	b.lim.stats.streams.Add(1)
	return true
}

func (b *Bridge) releaseStream(p peer.ID) {
	b.streams.release(string(p))
	b.lim.stats.streams.Add(-1)
}

// streamReader is a stream as readLoop reads it, with the read deadlines of ConnLimits:
// between messages the idle deadline (inbound streams only: a node never writes on its own
// outgoing stream's reverse direction), from a message's first byte the message deadline.
// A deadline is set only when a read actually waits on the stream (the frame reader's
// buffer is empty): a burst of messages read from one frame sets none (yamux makes a timer
// of every deadline).
type streamReader struct {
	s        network.Stream
	idle     time.Duration // 0: none
	msg      time.Duration
	inMsg    bool
	msgStart time.Time
	applied  time.Time
}

func (b *Bridge) newStreamReader(s network.Stream, inbound bool) *streamReader {
	r := &streamReader{s: s, msg: b.cfg.conns.MessageTimeout}
	if inbound {
		r.idle = b.cfg.conns.StreamIdleTimeout
	}
	return r
}

// between marks the start of the wait for the next message.
func (r *streamReader) between() { r.inMsg = false }

// started marks a message's first byte (frameReader.started).
func (r *streamReader) started() { r.inMsg, r.msgStart = true, time.Now() }

func (r *streamReader) Read(p []byte) (int, error) {
	var dl time.Time
	switch {
	case r.inMsg:
		dl = r.msgStart.Add(r.msg)
	case r.idle > 0:
		dl = time.Now().Add(r.idle)
	}
	if !dl.Equal(r.applied) {
		_ = r.s.SetReadDeadline(dl)
		r.applied = dl
	}
	return r.s.Read(p)
}

// streamEnded decides what the end of a stream of p by err means for p's transactions. A
// stream the peer closed (it retires idle streams), one this node closed by deadline, or
// the node's own outgoing stream (responses come on the peer's stream) tell nothing about
// the peer. A reset or broken inbound stream, or any stream of a peer this node has no
// connection to any more, fails this node's requests to the peer (their responses were to
// come on it). The peer's requests here are given up only when it cannot be reached again
// (watchPeers, checkPeer).
func (b *Bridge) streamEnded(p peer.ID, inbound bool, err error) {
	if b.ctx.Err() != nil {
		return
	}
	connected := b.h.Network().Connectedness(p) == network.Connected
	switch {
	case timedOut(err):
		b.lim.stats.streamsTimedOut.Add(1)
	case !connected || (inbound && !isEOF(err)):
		b.txl.failPeer(p, fmt.Errorf("%w: %s: stream ended: %v", ErrLinkDown, p, err))
	}
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }

func timedOut(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
