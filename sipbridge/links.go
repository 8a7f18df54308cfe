package sipbridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/hiersip/hiersip/internal/p2pnet"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

const writeTimeout = 10 * time.Second

// Link limits: what one peer's queue holds before the node refuses to queue more (the
// peer, or the path to it, takes less than the node sends), and how much one write
// carries.
const (
	linkQueueMax  = 4096
	linkQueueSize = 8 << 20
	linkBatchSize = 256 << 10
)

// links is the libp2p transport: one long-lived outgoing stream per peer, and a reader per
// stream. Everything this node sends to a peer (requests and responses) is queued on the
// peer's link, in order, and written by the link's writer, which writes whatever has
// queued up meanwhile in one stream write (one yamux frame, one TLS record or noise
// message for a burst, not one per message), opens the stream when there is none and
// retires one idle for half the peers' StreamIdleTimeout. No one who sends waits for the
// stream: not a reader answering a peer, not a relay. Whatever arrives on any stream from
// the peer is read by that stream's reader, parsed once and handed to the admission chain.
type links struct {
	b       *Bridge
	mu      sync.Mutex
	out     map[peer.ID]*link
	streams map[network.Stream]struct{}
	closed  bool
}

// link is the outgoing side to one peer.
type link struct {
	ls *links
	p  peer.ID

	mu      sync.Mutex
	q       []queued
	qBytes  int
	writing bool // a writer goroutine runs
	closed  bool

	s    network.Stream // written by the writer only
	last time.Time      // last write on s
}

// queued is one encoded message waiting on a link.
type queued struct {
	buf  *bytes.Buffer
	done func(error) // nil, or told the write's outcome
}

func newLinks(b *Bridge) *links {
	return &links{b: b, out: map[peer.ID]*link{}, streams: map[network.Stream]struct{}{}}
}

func (ls *links) track(s network.Stream) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return false
	}
	ls.streams[s] = struct{}{}
	return true
}

func (ls *links) untrack(s network.Stream) {
	ls.mu.Lock()
	delete(ls.streams, s)
	ls.mu.Unlock()
}

func (ls *links) closeAll() {
	ls.mu.Lock()
	ls.closed = true
	l := slices.Collect(maps.Keys(ls.streams))
	out := slices.Collect(maps.Values(ls.out))
	ls.mu.Unlock()
	for _, s := range l {
		_ = s.Reset()
	}
	for _, k := range out {
		k.close()
	}
}

func (ls *links) get(p peer.ID) (*link, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return nil, ErrClosed
	}
	l, ok := ls.out[p]
	if !ok {
		l = &link{ls: ls, p: p}
		ls.out[p] = l
	}
	return l, nil
}

// send queues msg (the caller's own) for peer p; addrs, when given, are added to the
// peerstore first. done (if not nil) learns the outcome (see Bridge.send).
func (ls *links) send(p peer.ID, addrs []ma.Multiaddr, msg sip.Message, done func(error)) error {
	b := ls.b
	if p == b.self {
		return fmt.Errorf("%w: refusing to send to self", ErrLinkDown)
	}
	l, err := ls.get(p)
	if err != nil {
		return err
	}
	if len(addrs) > 0 {
		b.h.Peerstore().AddAddrs(p, addrs, peerstore.TempAddrTTL)
	}
	buf := getBuf()
	encodeTo(buf, msg)
	b.traceMsg(time.Now(), true, p, msg) // the send's time: the answer can arrive before the write
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		putBuf(buf)
		return ErrClosed
	case len(l.q) >= linkQueueMax || l.qBytes+buf.Len() > linkQueueSize:
		l.mu.Unlock()
		putBuf(buf)
		return fmt.Errorf("%w: %s: send queue full", ErrLinkDown, p)
	}
	l.q = append(l.q, queued{buf: buf, done: done})
	l.qBytes += buf.Len()
	start := !l.writing
	l.writing = true
	l.mu.Unlock()
	if start && !b.spawn(l.write) {
		// Closing: drop what is queued (this message, and any another sender queued
		// meanwhile) without telling: the senders may hold locks their done needs, and
		// whoever waits for a write also watches the bridge's closing.
		l.mu.Lock()
		q := l.q
		l.q, l.qBytes, l.writing, l.closed = nil, 0, false, true
		l.mu.Unlock()
		for _, m := range q {
			putBuf(m.buf)
		}
		return ErrClosed
	}
	return nil
}

// write is the link's writer: it writes what is queued, batch by batch, until the queue
// is empty.
func (l *link) write() {
	for {
		l.mu.Lock()
		batch := l.q
		l.q, l.qBytes = nil, 0
		if len(batch) == 0 {
			l.writing = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		for len(batch) > 0 {
			n, size := 0, 0
			for n < len(batch) && (n == 0 || size+batch[n].buf.Len() <= linkBatchSize) {
				size += batch[n].buf.Len()
				n++
			}
			err := l.writeBatch(batch[:n], size)
			for _, q := range batch[:n] {
				putBuf(q.buf)
				if q.done != nil {
					q.done(err)
				}
			}
			batch = batch[n:]
		}
	}
}

// writeBatch writes the messages of batch (size bytes in all) on the stream in one write,
// opening or reopening the stream when needed (twice at most).
func (l *link) writeBatch(batch []queued, size int) error {
	b := l.ls.b
	var data []byte
	var joined *bytes.Buffer
	if len(batch) == 1 {
		data = batch[0].buf.Bytes()
	} else {
		joined = getBuf()
		joined.Grow(size)
		for _, q := range batch {
			joined.Write(q.buf.Bytes())
		}
		data = joined.Bytes()
		defer putBuf(joined)
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if l.s != nil && time.Since(l.last) > b.cfg.conns.StreamIdleTimeout/2 {
			// idle: the peer may be closing it (ConnLimits.StreamIdleTimeout); retire it
			_ = l.s.Close()
			l.setStream(nil)
		}
		if l.s == nil {
			s, oerr := l.ls.open(b.ctx, l.p)
			if oerr != nil {
				return oerr
			}
			l.setStream(s)
		}
		at := time.Now()
		_ = l.s.SetWriteDeadline(at.Add(writeTimeout))
		if _, err = l.s.Write(data); err == nil {
			l.last = at
			return nil
		}
		b.log.Debug("stream write failed, reopening", "peer", l.p, "err", err)
		_ = l.s.Reset()
		l.setStream(nil)
	}
	return fmt.Errorf("%w: %s: %w", ErrLinkDown, l.p, err)
}

func (l *link) setStream(s network.Stream) {
	l.mu.Lock()
	l.s = s
	l.mu.Unlock()
}

// streamEnded forgets s when it is the link's stream (its reader saw it end).
func (l *link) streamEnded(s network.Stream) {
	l.mu.Lock()
	if l.s == s && !l.writing {
		l.s = nil
	}
	l.mu.Unlock()
}

// close fails what is queued; the link takes nothing more.
func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	q := l.q
	l.q, l.qBytes = nil, 0
	l.mu.Unlock()
	for _, m := range q {
		putBuf(m.buf)
		if m.done != nil {
			m.done(ErrClosed)
		}
	}
}

func (ls *links) open(ctx context.Context, p peer.ID) (network.Stream, error) {
	// A dial that hangs while the peer dials back (a relayed circuit just cut)
	// gives way to the peer's connection (p2pnet.NewStream).
	s, err := p2pnet.NewStream(ctx, ls.b.h, p, ProtocolID, "hiersip-sip", ls.b.cfg.dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLinkDown, p, err)
	}
	if !ls.track(s) {
		_ = s.Reset()
		return nil, ErrClosed
	}
	if !ls.b.spawn(func() {
		ls.readLoop(s, p, false)
		if l, err := ls.get(p); err == nil {
			l.streamEnded(s)
		}
	}) {
		_ = s.Reset()
		return nil, ErrClosed
	}
	return s, nil
}

// handleStream serves a stream opened by another node.
func (ls *links) handleStream(s network.Stream) {
	p := s.Conn().RemotePeer()
	if !ls.b.admitStream(p) {
		_ = s.Reset()
		return
	}
	defer ls.b.releaseStream(p)
	if !ls.track(s) {
		_ = s.Reset()
		return
	}
	if !ls.b.track() {
		_ = s.Reset()
		return
	}
	defer ls.b.wg.Done()
	ls.readLoop(s, p, true)
}

// readLoop reads framed messages until the stream ends. A message that cannot be framed or
// parsed ends the stream (Reset) after a 400 when a response could be built. Deadlines
// (ConnLimits) end an inbound stream that stays idle and any stream whose message does not
// arrive whole in time.
func (ls *links) readLoop(s network.Stream, p peer.ID, incoming bool) {
	defer ls.untrack(s)
	b := ls.b
	sr := b.newStreamReader(s, incoming)
	fr := newFrameReader(sr, b.cfg.maxMsg)
	fr.started = sr.started
	key := peerKey(p)
	for {
		sr.between()
		data, err := fr.next()
		if err != nil {
			var fe *frameError
			if errors.As(err, &fe) {
				b.log.Debug("bad framing from peer", "peer", p, "err", err)
				if m, perr := parseFrame(withoutLength(fe.head)); perr == nil {
					if req, ok := m.(*sip.Request); ok && !req.IsAck() {
						b.respondTo(&inbound{req: req, from: path{kind: tpP2P, peer: p}}, 400, "Bad Request: "+err.Error())
					}
				}
			} else if !errors.Is(err, io.EOF) && b.ctx.Err() == nil {
				b.log.Debug("stream ended", "peer", p, "err", err)
			}
			_ = s.Reset()
			b.streamEnded(p, incoming, err)
			return
		}
		now := time.Now()
		if !b.lim.peers.rawAllow(key, now) {
			b.lim.stats.dropped.Add(1)
			continue // over the peer's rate: dropped unparsed
		}
		msg, err := b.parser.ParseSIP(data)
		if err != nil {
			b.log.Debug("unparsable message from peer", "peer", p, "err", err, "msg", string(data))
			_ = s.Reset()
			return
		}
		b.traceMsg(now, false, p, msg)
		b.receive(newInbound(msg, path{kind: tpP2P, peer: p}, key, now))
	}
}

// receivePeer hands msg, as read from a stream of peer p, to the admission chain (fuzzing).
func (b *Bridge) receivePeer(p peer.ID, msg sip.Message) {
	b.receive(newInbound(msg, path{kind: tpP2P, peer: p}, peerKey(p), time.Now()))
}
