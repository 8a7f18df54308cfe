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

// serializer runs functions with the same key one after the other, in submission order,
// and functions with different keys concurrently. It keeps one dialog's messages in order.
type serializer struct {
	mu    sync.Mutex
	q     map[string][]func()
	spawn func(func()) bool // starts a goroutine; false when the owner is closing
}

func newSerializer(spawn func(func()) bool) *serializer {
	return &serializer{q: map[string][]func(){}, spawn: spawn}
}

func (s *serializer) do(key string, f func()) {
	s.mu.Lock()
	if q, ok := s.q[key]; ok {
		s.q[key] = append(q, f)
		s.mu.Unlock()
		return
	}
	s.q[key] = nil
	s.mu.Unlock()
	started := s.spawn(func() {
		for {
			f()
			s.mu.Lock()
			q := s.q[key]
			if len(q) == 0 {
				delete(s.q, key)
				s.mu.Unlock()
				return
			}
			f = q[0]
			q[0] = nil
			s.q[key] = q[1:]
			s.mu.Unlock()
		}
	})
	if !started {
		s.mu.Lock()
		delete(s.q, key)
		s.mu.Unlock()
	}
}
