package sipbridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

const writeTimeout = 10 * time.Second

// links holds one long-lived outgoing stream per peer. Everything this node sends to a peer
// (requests and responses) goes on that stream, in order, under the link's lock; whatever
// arrives on any stream from the peer is read by a reader goroutine per stream.
type links struct {
	b       *Bridge
	mu      sync.Mutex
	out     map[peer.ID]*link
	streams map[network.Stream]struct{}
	closed  bool
}

type link struct {
	p    peer.ID
	mu   sync.Mutex
	s    network.Stream
	last time.Time // last write on s
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
	l := make([]network.Stream, 0, len(ls.streams))
	for s := range ls.streams {
		l = append(l, s)
	}
	ls.mu.Unlock()
	for _, s := range l {
		_ = s.Reset()
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
		l = &link{p: p}
		ls.out[p] = l
	}
	return l, nil
}

// send writes msg (which must be the caller's own copy) to peer p, opening or reopening
// the peer's stream when needed. addrs, when given, are added to the peerstore first.
func (ls *links) send(ctx context.Context, p peer.ID, addrs []ma.Multiaddr, msg sip.Message) error {
	if p == ls.b.self {
		return fmt.Errorf("%w: refusing to send to self", ErrLinkDown)
	}
	l, err := ls.get(p)
	if err != nil {
		return err
	}
	if len(addrs) > 0 {
		ls.b.h.Peerstore().AddAddrs(p, addrs, peerstore.TempAddrTTL)
	}
	data := encode(msg)
	l.mu.Lock()
	defer l.mu.Unlock()
	for attempt := 0; attempt < 2; attempt++ {
		if l.s != nil && time.Since(l.last) > ls.b.cfg.conns.StreamIdleTimeout/2 {
			// idle: the peer may be closing it (ConnLimits.StreamIdleTimeout); retire it
			_ = l.s.Close()
			l.s = nil
		}
		if l.s == nil {
			s, err := ls.open(ctx, p)
			if err != nil {
				return err
			}
			l.s = s
		}
		at := time.Now() // the send's time: the answer can arrive before Write returns
		_ = l.s.SetWriteDeadline(at.Add(writeTimeout))
		_, err = l.s.Write(data)
		if err == nil {
			l.last = at
			ls.b.traceMsg(at, true, p, msg)
			return nil
		}
		ls.b.log.Debug("stream write failed, reopening", "peer", p, "err", err)
		_ = l.s.Reset()
		l.s = nil
	}
	return fmt.Errorf("%w: %s: %w", ErrLinkDown, p, err)
}

func (ls *links) open(ctx context.Context, p peer.ID) (network.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, ls.b.cfg.dialTimeout)
	defer cancel()
	ctx = network.WithAllowLimitedConn(ctx, "hiersip-sip")
	s, err := ls.b.h.NewStream(ctx, p, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrLinkDown, p, err)
	}
	if !ls.track(s) {
		_ = s.Reset()
		return nil, ErrClosed
	}
	if !ls.b.spawn(func() {
		ls.readLoop(s, p, false)
		l, err := ls.get(p)
		if err == nil {
			l.mu.Lock()
			if l.s == s {
				l.s = nil
			}
			l.mu.Unlock()
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
func (ls *links) readLoop(s network.Stream, p peer.ID, inbound bool) {
	defer ls.untrack(s)
	b := ls.b
	fr := newFrameReader(s, b.cfg.maxMsg)
	before, started := b.streamDeadlines(s, inbound)
	fr.started = started
	for {
		before()
		data, err := fr.next()
		if err != nil {
			var fe *frameError
			if errors.As(err, &fe) {
				b.log.Debug("bad framing from peer", "peer", p, "err", err)
				if m, perr := parseFrame(withoutLength(fe.head)); perr == nil {
					if req, ok := m.(*sip.Request); ok && !req.IsAck() {
						b.replyPeer(p, req, 400, "Bad Request: "+err.Error())
					}
				}
			} else if !errors.Is(err, io.EOF) && b.ctx.Err() == nil {
				b.log.Debug("stream ended", "peer", p, "err", err)
			}
			_ = s.Reset()
			b.streamEnded(p, inbound, err)
			return
		}
		if !b.admitPeerFrame(p) {
			continue // over the peer's rate: dropped unparsed
		}
		msg, err := parseFrame(data)
		if err != nil {
			b.log.Debug("unparsable message from peer", "peer", p, "err", err, "msg", string(data))
			_ = s.Reset()
			return
		}
		b.traceMsg(time.Now(), false, p, msg)
		switch m := msg.(type) {
		case *sip.Request:
			if b.admitPeer(p, m) {
				b.onPeerRequest(p, m)
			}
		case *sip.Response:
			b.onPeerResponse(p, m)
		}
	}
}
