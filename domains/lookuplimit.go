package domains

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/encoding/protowire"
)

type rateLimitT = rate.Limit

func rateLimit(r float64) rate.Limit { return rate.Limit(r) }

// peerLimiter bounds the GET_VALUE requests an overlay answers per remote
// peer (WithLookupLimit). It sits between kad-dht and its inbound streams:
// it reads each length-prefixed kad-dht message, makes a GET_VALUE wait for
// the peer's token bucket, and hands the message on unchanged.
type peerLimiter struct {
	r      rate.Limit
	burst  int
	refuse func(reason string) // counts requests that had to wait; may be nil

	mu    sync.Mutex
	peers map[peer.ID]*limiterEntry
}

type limiterEntry struct {
	l    *rate.Limiter
	used time.Time
}

// maxLimiterPeers bounds the buckets kept; idle ones are dropped first.
const maxLimiterPeers = 4096

// maxLimitWait is the longest a request waits for its turn; a peer further
// behind has its stream reset.
const maxLimitWait = 10 * time.Second

func newPeerLimiter(r rate.Limit, burst int, refuse func(string)) *peerLimiter {
	return &peerLimiter{r: r, burst: burst, refuse: refuse, peers: make(map[peer.ID]*limiterEntry)}
}

func (pl *peerLimiter) limiter(p peer.ID) *rate.Limiter {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	now := time.Now()
	e, ok := pl.peers[p]
	if !ok {
		if len(pl.peers) >= maxLimiterPeers {
			for id, old := range pl.peers {
				// A bucket idle long enough to be full again loses nothing.
				if now.Sub(old.used) > time.Duration(float64(pl.burst)/float64(pl.r)*float64(time.Second))+time.Second {
					delete(pl.peers, id)
				}
			}
			if len(pl.peers) >= maxLimiterPeers {
				clear(pl.peers)
			}
		}
		e = &limiterEntry{l: rate.NewLimiter(pl.r, pl.burst)}
		pl.peers[p] = e
	}
	e.used = now
	return e.l
}

// wrap returns s with its inbound GET_VALUE requests rate-bound.
func (pl *peerLimiter) wrap(s network.Stream) network.Stream {
	return &limitedStream{Stream: s, pl: pl, br: bufio.NewReader(s)}
}

// kadGetValue is the type number of GET_VALUE in kad-dht's protocol
// (github.com/libp2p/go-libp2p-kad-dht/pb, Message_GET_VALUE).
const kadGetValue = 1

type limitedStream struct {
	network.Stream
	pl  *peerLimiter
	br  *bufio.Reader
	buf []byte // the rest of the current message, to hand on
}

func (s *limitedStream) Read(p []byte) (int, error) {
	if len(s.buf) == 0 {
		if err := s.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// next reads one length-prefixed message and waits for its turn if it is a
// GET_VALUE.
func (s *limitedStream) next() error {
	size, err := binary.ReadUvarint(s.br)
	if err != nil {
		return err
	}
	if size > network.MessageSizeMax {
		return io.ErrShortBuffer
	}
	msg := make([]byte, binary.MaxVarintLen64+int(size))
	n := binary.PutUvarint(msg, size)
	msg = msg[:n+int(size)]
	if _, err := io.ReadFull(s.br, msg[n:]); err != nil {
		return err
	}
	if kadType(msg[n:]) == kadGetValue {
		l := s.pl.limiter(s.Conn().RemotePeer())
		if !l.Allow() {
			if s.pl.refuse != nil {
				s.pl.refuse("throttled")
			}
			ctx, cancel := context.WithTimeout(context.Background(), maxLimitWait)
			err := l.Wait(ctx)
			cancel()
			if err != nil {
				_ = s.Stream.Reset()
				return err
			}
		}
	}
	s.buf = msg
	return nil
}

// kadType returns the type field (number 1) of a kad-dht message, the last
// one if repeated (protobuf's rule), 0 (PUT_VALUE, the default) if absent or
// unparsable.
func kadType(b []byte) uint64 {
	var typ uint64
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return typ
		}
		b = b[n:]
		if num == 1 && wt == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return typ
			}
			typ, b = v, b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, wt, b)
		if m < 0 {
			return typ
		}
		b = b[m:]
	}
	return typ
}
