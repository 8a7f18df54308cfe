package sipbridge

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
)

// txLayer is the bridge's transaction table: server transactions by the key of RFC 3261
// §17.2.3 (a peer's by the peer, branch and method), client transactions by branch and
// method (§17.1.3). It matches what the transports read — retransmissions, CANCELs, the
// ACKs of non-2xx answers, responses — to their transactions, and opens new ones.
type txLayer struct {
	b       *Bridge
	mu      sync.Mutex
	servers map[string]*serverTx
	clients map[string]*clientTx
	closed  bool
}

func newTxLayer(b *Bridge) *txLayer {
	return &txLayer{b: b, servers: map[string]*serverTx{}, clients: map[string]*clientTx{}}
}

// serverKey is the key of in's server transaction, with method standing for its own
// (ACK and CANCEL match their INVITE's).
func serverKey(in *inbound, method sip.RequestMethod) (string, bool) {
	req := in.req
	via, cseq := req.Via(), req.CSeq()
	if via == nil || cseq == nil {
		return "", false
	}
	branch, _ := via.Params.Get("branch")
	var sb strings.Builder
	if in.from.kind == tpP2P {
		if branch == "" {
			return "", false
		}
		sb.Grow(len(branch) + len(in.from.peer) + len(method) + 3)
		sb.WriteString(string(method))
		sb.WriteByte('|')
		sb.WriteString(branch)
		sb.WriteString("|p")
		sb.WriteString(string(in.from.peer))
		return sb.String(), true
	}
	if strings.HasPrefix(branch, branchMagic) && len(branch) > len(branchMagic) {
		port := via.Port
		if port <= 0 {
			port = sip.DefaultPort(via.Transport)
		}
		sb.Grow(len(branch) + len(via.Host) + len(method) + 10)
		sb.WriteString(string(method))
		sb.WriteByte('|')
		sb.WriteString(branch)
		sb.WriteByte('|')
		sb.WriteString(via.Host)
		sb.WriteByte(':')
		sb.WriteString(strconv.Itoa(port))
		return sb.String(), true
	}
	// RFC 2543: no magic cookie, the transaction is named by the request itself.
	from, callID := req.From(), req.CallID()
	if from == nil || callID == nil {
		return "", false
	}
	tag, _ := from.Params.Get("tag")
	sb.WriteString(string(method))
	sb.WriteString("|2543|")
	sb.WriteString(tag)
	sb.WriteByte('|')
	sb.WriteString(callID.Value())
	sb.WriteByte('|')
	sb.WriteString(strconv.FormatUint(uint64(cseq.SeqNo), 10))
	sb.WriteByte('|')
	sb.WriteString(via.Value())
	return sb.String(), true
}

// clientKey is the key of the client transaction a message belongs to: the top Via's
// branch (this node's) and the CSeq method.
func clientKey(m sip.Message) (string, bool) {
	via, cseq := m.Via(), m.CSeq()
	if via == nil || cseq == nil {
		return "", false
	}
	branch, _ := via.Params.Get("branch")
	if branch == "" {
		return "", false
	}
	return string(cseq.MethodName) + "|" + branch, true
}

// receiveRequest matches a request read from a transport to a server transaction: a
// retransmission is answered from its transaction, a CANCEL answered and signalled, the
// ACK of a non-2xx answer absorbed (handled: nothing more to do). Any other request gets a
// new transaction (in.stx), and so does no ACK.
func (l *txLayer) receiveRequest(in *inbound) (handled bool) {
	req := in.req
	switch req.Method {
	case sip.CANCEL:
		key, ok := serverKey(in, sip.INVITE)
		st := l.server(key, ok)
		if st == nil {
			l.b.respondTo(in, 481, "Call/Transaction Does Not Exist")
			return true
		}
		l.b.respondTo(in, 200, "OK")
		st.cancelled(req, nil)
		return true
	case sip.ACK:
		key, ok := serverKey(in, sip.INVITE)
		if st := l.server(key, ok); st != nil {
			return st.acked()
		}
		return false
	}
	key, ok := serverKey(in, req.Method)
	if !ok {
		l.b.respondTo(in, 400, "Bad Request: missing Via branch, Call-ID or CSeq")
		return true
	}
	l.mu.Lock()
	if st := l.servers[key]; st != nil {
		l.mu.Unlock()
		st.retransmitted()
		return true
	}
	if l.closed {
		l.mu.Unlock()
		l.b.respondTo(in, 503, "Service Unavailable: node shutting down")
		return true
	}
	st := newServerTx(l, key, req, in.from)
	l.servers[key] = st
	l.mu.Unlock()
	in.stx = st
	return false
}

func (l *txLayer) server(key string, ok bool) *serverTx {
	if !ok {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.servers[key]
}

// receiveResponse hands a response read from a transport to its client transaction;
// false when none takes it (a stray: a retransmitted 2xx, say).
func (l *txLayer) receiveResponse(in *inbound) bool {
	key, ok := clientKey(in.res)
	if !ok {
		return false
	}
	l.mu.Lock()
	ct := l.clients[key]
	l.mu.Unlock()
	if ct == nil || (in.from.kind == tpP2P) != (ct.p.kind == tpP2P) || (ct.p.kind == tpP2P && ct.p.peer != in.from.peer) {
		return false
	}
	return ct.deliver(in.res)
}

// request sends req (with this node's Via on top) along p in a new client transaction.
func (l *txLayer) request(p path, req *sip.Request) (*clientTx, error) {
	key, ok := clientKey(req)
	if !ok {
		return nil, fmt.Errorf("sipbridge: request without Via branch or CSeq")
	}
	t := &clientTx{l: l, key: key, method: req.Method, p: p, req: req, resp: make(chan *sip.Response, respQueue),
		txCore: newTxCore()}
	// Everything the transaction holds is set before it is published in l.clients: from
	// then on its fields belong to its lock (a Close may end it at once, from another
	// goroutine). The encoded request is never modified, only dropped, so data may be sent
	// from here unlocked.
	var data []byte
	if p.kind == tpUDP {
		buf := getBuf()
		encodeTo(buf, req)
		data = bytes.Clone(buf.Bytes())
		putBuf(buf)
		t.data = data
	}
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return nil, ErrClosed
	case l.clients[key] != nil:
		l.mu.Unlock()
		return nil, fmt.Errorf("sipbridge: client transaction %s exists", key)
	}
	l.clients[key] = t
	l.mu.Unlock()
	var err error
	if p.kind == tpUDP {
		err = l.b.sendBytes(p, data)
	} else {
		err = l.b.send(p, req, func(err error) {
			if err != nil {
				t.fail(errLink(p.peer, err))
			}
		})
	}
	if err != nil {
		if p.kind == tpP2P {
			err = errLink(p.peer, err)
		}
		t.end(err)
		return nil, err
	}
	t.start()
	return t, nil
}

func (l *txLayer) removeServer(t *serverTx) {
	l.mu.Lock()
	if l.servers[t.key] == t {
		delete(l.servers, t.key)
	}
	l.mu.Unlock()
}

func (l *txLayer) removeClient(t *clientTx) {
	l.mu.Lock()
	if l.clients[t.key] == t {
		delete(l.clients, t.key)
	}
	l.mu.Unlock()
}

// hasPeer reports whether any transaction, client or server, is with p.
func (l *txLayer) hasPeer(p peer.ID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range l.servers {
		if t.p.isPeer(p) {
			return true
		}
	}
	for _, t := range l.clients {
		if t.p.isPeer(p) {
			return true
		}
	}
	return false
}

// isPeer reports whether the path is a libp2p stream to or from p.
func (pt path) isPeer(p peer.ID) bool { return pt.kind == tpP2P && pt.peer == p }

// txsOf returns the transactions of m whose path keep accepts, every one for a nil
// keep. The caller holds the layer's lock.
func txsOf[T interface{ route() path }](m map[string]T, keep func(path) bool) []T {
	out := make([]T, 0, len(m))
	for _, t := range m {
		if keep == nil || keep(t.route()) {
			out = append(out, t)
		}
	}
	return out
}

func (t *serverTx) route() path { return t.p }
func (t *clientTx) route() path { return t.p }

// serversOf returns the server transactions of requests from p.
func (l *txLayer) serversOf(p peer.ID) []*serverTx {
	l.mu.Lock()
	defer l.mu.Unlock()
	return txsOf(l.servers, func(pt path) bool { return pt.isPeer(p) })
}

// failPeer ends every client transaction waiting on p with err.
func (l *txLayer) failPeer(p peer.ID, err error) {
	l.mu.Lock()
	out := txsOf(l.clients, func(pt path) bool { return pt.isPeer(p) })
	l.mu.Unlock()
	for _, t := range out {
		t.fail(err)
	}
}

// close fails every client transaction with err (their relays answer upstream) and
// opens no transaction afterwards.
func (l *txLayer) close(err error) {
	l.mu.Lock()
	l.closed = true
	cs := txsOf(l.clients, nil)
	l.mu.Unlock()
	for _, t := range cs {
		t.end(err)
	}
}

// endAll ends every transaction left (their timers stop), once nothing runs any more.
func (l *txLayer) endAll(err error) {
	l.mu.Lock()
	cs, ss := txsOf(l.clients, nil), txsOf(l.servers, nil)
	l.mu.Unlock()
	for _, t := range cs {
		t.end(err)
	}
	for _, t := range ss {
		t.end(err)
	}
}

// size returns the numbers of server and client transactions (tests, benchmarks).
func (l *txLayer) size() (servers, clients int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.servers), len(l.clients)
}
