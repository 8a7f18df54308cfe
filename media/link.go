package media

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/internal/p2pnet"
)

// frame is one packet waiting for a peer's stream, with its header.
type frame struct {
	b    []byte
	at   int64 // unix nanoseconds it arrived from the phone
	ctrl bool
}

var framePool = sync.Pool{New: func() any { return &frame{b: make([]byte, 0, 256)} }}

// link carries this node's frames to one peer: a queue, bounded in bytes and age, and one
// writer goroutine that drains it into one long-lived stream (opened with
// network.WithAllowLimitedConn, so relayed connections work), batching what is queued into
// one Write. When the stream fails (a relay's limit ended its connection, a disconnection),
// the writer opens a new one on whatever connection libp2p has or dials; when the stream
// runs on a relayed connection and a direct one appears (hole punching), it moves to a new
// stream, which libp2p opens on the direct connection.
type link struct {
	r *Relay
	p peer.ID

	mu     sync.Mutex
	q      []*frame
	head   int
	bytes  int
	wake   chan struct{}
	quit   chan struct{}
	once   sync.Once
	pathSt atomic.Int32 // pathNone, pathDirect, pathRelayed
}

const (
	pathNone = iota
	pathDirect
	pathRelayed
)

func newLink(r *Relay, p peer.ID) *link {
	return &link{r: r, p: p, wake: make(chan struct{}, 1), quit: make(chan struct{})}
}

func (l *link) stop() { l.once.Do(func() { close(l.quit) }) }

func (l *link) path() string {
	switch l.pathSt.Load() {
	case pathDirect:
		return "direct"
	case pathRelayed:
		return "relayed"
	}
	return "none"
}

// enqueue queues a packet; when the queue is over its byte bound, the oldest audio (or,
// if there is none, the oldest frame) is dropped.
func (l *link) enqueue(id SessionID, flags byte, p []byte, now time.Time) {
	f := framePool.Get().(*frame)
	f.b = append(f.b[:0], make([]byte, frameHeader)...)
	putHeader(f.b, id, flags, len(p))
	f.b = append(f.b, p...)
	f.at, f.ctrl = now.UnixNano(), flags&flagControl != 0
	l.mu.Lock()
	for l.bytes+len(f.b) > l.r.cfg.queueBytes && l.head < len(l.q) {
		victim := l.head
		for i := l.head; i < len(l.q); i++ {
			if !l.q[i].ctrl {
				victim = i
				break
			}
		}
		old := l.q[victim]
		if victim == l.head { // the usual case: the oldest frame is audio
			l.q[l.head] = nil
			l.head++
		} else {
			copy(l.q[victim:], l.q[victim+1:])
			l.q[len(l.q)-1] = nil
			l.q = l.q[:len(l.q)-1]
		}
		l.bytes -= len(old.b)
		framePool.Put(old)
		l.r.stats.drop(DropQueueFull)
	}
	if l.head >= 1024 && l.head >= len(l.q)/2 { // keep the dropped prefix from growing
		n := copy(l.q, l.q[l.head:])
		clear(l.q[n:])
		l.q, l.head = l.q[:n], 0
	}
	l.q = append(l.q, f)
	l.bytes += len(f.b)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take removes and returns every queued frame.
func (l *link) take(into []*frame) []*frame {
	l.mu.Lock()
	defer l.mu.Unlock()
	into = append(into, l.q[l.head:]...)
	clear(l.q)
	l.q, l.head, l.bytes = l.q[:0], 0, 0
	return into
}

// run is the link's writer.
func (l *link) run() {
	r := l.r
	var (
		s        network.Stream
		batch    []*frame
		buf      []byte
		retryAt  time.Time
		lastMove time.Time
		had      bool // a stream was open before: the next one is a reopen
	)
	closeStream := func(reset bool) {
		if s == nil {
			return
		}
		if reset {
			_ = s.Reset()
		} else {
			_ = s.Close()
		}
		s = nil
		l.pathSt.Store(pathNone)
	}
	defer closeStream(true)
	tick := time.NewTicker(migrateEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-l.quit:
			return
		case <-tick.C:
			if s != nil && l.pathSt.Load() == pathRelayed && time.Since(lastMove) > migrateEvery &&
				r.h.Network().Connectedness(l.p) == network.Connected && hasDirect(r.h.Network().ConnsToPeer(l.p)) {
				lastMove = time.Now()
				if ns, err := l.open(); err == nil {
					r.log.Debug("media link moved to a direct connection", "peer", l.p)
					r.stats.migrations.Add(1)
					old := s
					s, had = ns, true
					_ = old.SetWriteDeadline(time.Now().Add(writeTimeout))
					_ = old.Close() // the peer reads what is in flight, then EOF
				}
			}
			continue
		case <-l.wake:
		}
		batch = l.take(batch[:0])
		if len(batch) == 0 {
			continue
		}
		now := time.Now()
		maxAge := r.cfg.maxDelay.Nanoseconds()
		buf = buf[:0]
		kept := 0
		for _, f := range batch {
			age := now.UnixNano() - f.at
			if age > maxAge && (!f.ctrl || age > controlAgeFactor*maxAge) {
				r.stats.drop(DropStale)
				continue
			}
			buf = append(buf, f.b...)
			batch[kept] = f
			kept++
		}
		if kept == 0 {
			l.release(batch)
			continue
		}
		sent := false
		for attempt := 0; attempt < 2 && !sent; attempt++ {
			if s != nil && s.Conn().IsClosed() {
				closeStream(true)
			}
			if s == nil {
				if now.Before(retryAt) {
					break
				}
				ns, err := l.open()
				if err != nil {
					r.log.Debug("media stream to peer failed", "peer", l.p, "err", err)
					retryAt = time.Now().Add(reopenBackoff)
					break
				}
				if had {
					r.stats.reopens.Add(1)
				}
				s, had = ns, true
			}
			_ = s.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := s.Write(buf); err != nil {
				r.log.Debug("media stream write failed, reopening", "peer", l.p, "err", err)
				closeStream(true)
				continue
			}
			sent = true
		}
		done := time.Now().UnixNano()
		for _, f := range batch[:kept] {
			if sent {
				r.stats.sent(done-f.at, len(f.b)-frameHeader)
			} else {
				r.stats.drop(DropLinkDown)
			}
		}
		l.release(batch[:kept])
		if cap(buf) > 256<<10 {
			buf = nil
		}
	}
}

func (l *link) release(fs []*frame) {
	for i, f := range fs {
		if cap(f.b) <= 2*MaxPacket {
			framePool.Put(f)
		}
		fs[i] = nil
	}
}

// open opens a media stream to the peer on the best connection libp2p has (a direct one
// before a relayed one), dialing if there is none (p2pnet.NewStream: a dial that hangs
// while the peer dials back gives way to the peer's connection).
func (l *link) open() (network.Stream, error) {
	r := l.r
	s, err := p2pnet.NewStream(r.ctx, r.h, l.p, ProtocolID, "hiersip-media", dialTimeout)
	if err != nil {
		return nil, err
	}
	if p2pnet.Relayed(s.Conn()) {
		l.pathSt.Store(pathRelayed)
	} else {
		l.pathSt.Store(pathDirect)
	}
	// Nothing is read on our own stream: the peer never writes to it.
	_ = s.CloseRead()
	return s, nil
}

func hasDirect(cs []network.Conn) bool {
	for _, c := range cs {
		if !c.IsClosed() && !p2pnet.Relayed(c) {
			return true
		}
	}
	return false
}

// handleStream reads frames another node sends, and hands each to its session.
func (r *Relay) handleStream(s network.Stream) {
	p := s.Conn().RemotePeer()
	r.mu.Lock()
	if r.closed || r.inPeer[p] >= maxInboundPerPeer {
		r.mu.Unlock()
		_ = s.Reset()
		return
	}
	r.inbound[s] = p
	r.inPeer[p]++
	r.wg.Add(1)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.inbound, s)
		if r.inPeer[p]--; r.inPeer[p] <= 0 {
			delete(r.inPeer, p)
		}
		r.mu.Unlock()
		r.wg.Done()
	}()
	_ = s.CloseWrite()
	if err := r.readFrames(s, p); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// readFrames reads frames from rd until it ends; an error means the peer broke the framing.
func (r *Relay) readFrames(rd io.Reader, p peer.ID) error {
	br := bufio.NewReaderSize(rd, 64<<10)
	buf := make([]byte, frameHeader-2+MaxPacket)
	var lenb [2]byte
	for {
		if _, err := io.ReadFull(br, lenb[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return nil // reset or closed under us: nothing to answer
		}
		n := int(binary.BigEndian.Uint16(lenb[:]))
		if n < frameHeader-2 || n > frameHeader-2+MaxPacket {
			r.stats.drop(DropBadFrame)
			return errors.New("media: bad frame length")
		}
		if _, err := io.ReadFull(br, buf[:n]); err != nil {
			return nil
		}
		var id SessionID
		copy(id[:], buf[:8])
		flags := buf[8]
		if flags&^flagsKnown != 0 {
			r.stats.drop(DropBadFrame)
			return errors.New("media: unknown frame flags")
		}
		s := r.session(id)
		if s == nil {
			r.stats.drop(DropUnknownSession)
			continue
		}
		comp := RTP
		if flags&flagRTCPPort != 0 {
			comp = RTCP
		}
		s.toPhoneFrom(p, comp, buf[9:n])
	}
}
