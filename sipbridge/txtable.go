package sipbridge

import (
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
)

// p2pClientTx is a client transaction sent over a libp2p stream. The stream is reliable, so
// there are no retransmissions; the transaction ends with a final response, a timeout in
// the proxy, or the failure of the link.
type p2pClientTx struct {
	key  string
	peer peer.ID
	resp chan *sip.Response
	done chan struct{}
	once sync.Once
	err  error
}

func (t *p2pClientTx) fail(err error) {
	t.once.Do(func() { t.err = err; close(t.done) })
}

// p2pServerTx is a server transaction for a request received over a libp2p stream.
type p2pServerTx struct {
	key     string
	peer    peer.ID
	cancel  chan struct{}
	cOnce   sync.Once
	created time.Time
}

func (t *p2pServerTx) signalCancel() { t.cOnce.Do(func() { close(t.cancel) }) }

type txTable struct {
	mu      sync.Mutex
	client  map[string]*p2pClientTx
	server  map[string]*p2pServerTx
	perPeer map[peer.ID]int
	closed  bool
}

func newTxTable() *txTable {
	return &txTable{client: map[string]*p2pClientTx{}, server: map[string]*p2pServerTx{}, perPeer: map[peer.ID]int{}}
}

func clientKey(branch string, method sip.RequestMethod) string { return branch + "|" + string(method) }

func serverKey(p peer.ID, branch string, method sip.RequestMethod) string {
	return string(p) + "|" + branch + "|" + string(method)
}

func (t *txTable) addClient(key string, p peer.ID) (*p2pClientTx, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	tx := &p2pClientTx{key: key, peer: p, resp: make(chan *sip.Response, 16), done: make(chan struct{})}
	t.client[key] = tx
	return tx, nil
}

func (t *txTable) removeClient(tx *p2pClientTx) {
	t.mu.Lock()
	if t.client[tx.key] == tx {
		delete(t.client, tx.key)
	}
	t.mu.Unlock()
}

// deliver hands a response to its client transaction; false when none matches.
func (t *txTable) deliver(key string, from peer.ID, res *sip.Response) bool {
	t.mu.Lock()
	tx, ok := t.client[key]
	t.mu.Unlock()
	if !ok || tx.peer != from {
		return false
	}
	if res.StatusCode < 200 {
		select {
		case tx.resp <- res:
		case <-tx.done:
		default: // a slow proxy loop: a provisional may be dropped
		}
		return true
	}
	select {
	case tx.resp <- res:
	case <-tx.done:
	case <-time.After(5 * time.Second):
	}
	return true
}

// addServer registers a server transaction; nil, false when it exists (a retransmission),
// nil, true when the peer is over its limit.
func (t *txTable) addServer(key string, p peer.ID, limit int) (tx *p2pServerTx, overLimit bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.server[key]; ok || t.closed {
		return nil, false
	}
	if t.perPeer[p] >= limit {
		return nil, true
	}
	tx = &p2pServerTx{key: key, peer: p, cancel: make(chan struct{}), created: time.Now()}
	t.server[key] = tx
	t.perPeer[p]++
	return tx, false
}

func (t *txTable) findServer(key string) *p2pServerTx {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.server[key]
}

func (t *txTable) removeServer(tx *p2pServerTx) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.server[tx.key] == tx {
		delete(t.server, tx.key)
		if t.perPeer[tx.peer]--; t.perPeer[tx.peer] <= 0 {
			delete(t.perPeer, tx.peer)
		}
	}
}

// failPeer ends every client transaction waiting on p.
func (t *txTable) failPeer(p peer.ID, err error) {
	t.mu.Lock()
	var l []*p2pClientTx
	for _, tx := range t.client {
		if tx.peer == p {
			l = append(l, tx)
		}
	}
	t.mu.Unlock()
	for _, tx := range l {
		tx.fail(err)
	}
}

func (t *txTable) failAll(err error) {
	t.mu.Lock()
	t.closed = true
	l := make([]*p2pClientTx, 0, len(t.client))
	for _, tx := range t.client {
		l = append(l, tx)
	}
	t.mu.Unlock()
	for _, tx := range l {
		tx.fail(err)
	}
}

// serializer runs functions with the same key (a Call-ID) one after the other, in the order
// their messages arrived, and functions with different keys concurrently. It keeps one
// dialog's messages in order. A message can reserve its place when it arrives (reserve) and
// supply its function later (run), after sipgo's transaction layer, which hands each message
// to a goroutine of its own, has let it through; a place that is not filled within the slot
// timeout (the message was absorbed, e.g. a retransmission) is skipped.
type serializer struct {
	mu      sync.Mutex
	q       map[string][]*slot
	spawn   func(func()) bool // starts a goroutine; false when the owner is closing
	timeout time.Duration
	seen    map[string]time.Time // ids run recently: their retransmissions reserve nothing
}

// seenFor is how long a run id is remembered: a retransmission within it is absorbed by
// sipgo's transaction layer (64*T1) and must not reserve a place.
const seenFor = 32 * time.Second

type slot struct {
	id    string
	f     func()
	ready chan struct{}
	once  sync.Once
}

func (s *slot) fill(f func()) bool {
	ok := false
	s.once.Do(func() { s.f = f; close(s.ready); ok = true })
	return ok
}

func newSerializer(spawn func(func()) bool) *serializer {
	return &serializer{q: map[string][]*slot{}, spawn: spawn, timeout: 100 * time.Millisecond, seen: map[string]time.Time{}}
}

// do queues f behind everything already queued or reserved under key.
func (s *serializer) do(key string, f func()) { s.run(key, "", f) }

// reserve keeps a place under key for the message id (no-op when one is pending).
func (s *serializer) reserve(key, id string) {
	s.mu.Lock()
	if _, ok := s.seen[key+"|"+id]; ok {
		s.mu.Unlock()
		return
	}
	for _, sl := range s.q[key] {
		if sl.id == id {
			s.mu.Unlock()
			return
		}
	}
	s.enqueueLocked(key, &slot{id: id, ready: make(chan struct{})})
	s.mu.Unlock()
}

// known reports whether id was run recently or has a place under key.
func (s *serializer) known(key, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[key+"|"+id]; ok {
		return true
	}
	for _, sl := range s.q[key] {
		if sl.id == id {
			return true
		}
	}
	return false
}

// run supplies f for the place reserved for id under key, or queues it at the end.
func (s *serializer) run(key, id string, f func()) {
	s.mu.Lock()
	if id != "" {
		s.seen[key+"|"+id] = time.Now().Add(seenFor)
		for _, sl := range s.q[key] {
			if sl.id == id && sl.fill(f) {
				s.mu.Unlock()
				return
			}
		}
	}
	sl := &slot{id: id, ready: make(chan struct{})}
	sl.fill(f)
	s.enqueueLocked(key, sl)
	s.mu.Unlock()
}

func (s *serializer) enqueueLocked(key string, sl *slot) {
	q, running := s.q[key]
	s.q[key] = append(q, sl)
	if running {
		return
	}
	if !s.spawn(func() { s.work(key) }) {
		delete(s.q, key)
	}
}

func (s *serializer) work(key string) {
	var t *time.Timer // made only when a place is not filled yet: most are
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		s.mu.Lock()
		q := s.q[key]
		if len(q) == 0 {
			delete(s.q, key)
			s.mu.Unlock()
			return
		}
		sl := q[0]
		s.mu.Unlock()
		select {
		case <-sl.ready:
		default:
			if t == nil {
				t = time.NewTimer(s.timeout)
			} else {
				t.Reset(s.timeout)
			}
			select {
			case <-sl.ready:
			case <-t.C:
				sl.fill(nil) // skipped: a late run queues anew
			}
		}
		if sl.f != nil {
			sl.f()
		}
		s.mu.Lock()
		q = s.q[key]
		q[0] = nil
		s.q[key] = q[1:]
		s.mu.Unlock()
	}
}

// purge forgets ids run before now-seenFor.
func (s *serializer) purge(now time.Time) {
	s.mu.Lock()
	for k, t := range s.seen {
		if now.After(t) {
			delete(s.seen, k)
		}
	}
	s.mu.Unlock()
}
