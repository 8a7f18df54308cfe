package sipbridge

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The transaction layer (RFC 3261 §17). A bridge has one: every request it serves, from a
// UA over UDP or TCP or from a peer over libp2p, gets a serverTx, and every request it
// sends a clientTx. Both satisfy sipgo's interfaces (sip.ServerTransaction and
// sip.ClientTransaction, STYLE.md item 11), so that the proxy core (relay.go) relays
// between any two of them without knowing where either leads; only the path differs.
//
// Over UDP the transactions retransmit (Timers A, E, G) and absorb retransmissions (J, K,
// D, H, I); over TCP and libp2p, which are reliable, they do not. They are fed by the
// transports' readers, which never wait: a response is handed to its client transaction
// through a buffered channel, and when the proxy core is slow to read, provisional
// responses beyond the buffer are dropped (a final response always has room), never the
// reader blocked. A transaction that has sent or received its final response keeps only
// what it needs to absorb retransmissions (the encoded answer or ACK), not the messages.

// Timer bases of RFC 3261 §17 (sipgo's defaults; kept per bridge, not read from sipgo's
// package variables).
const (
	t1 = 500 * time.Millisecond
	t2 = 4 * time.Second
	t4 = 5 * time.Second
)

// respQueue is the number of responses a client transaction buffers for its reader: a
// final response always fits, provisionals beyond queue-1 unread are dropped.
const respQueue = 8

type txState uint8

const (
	txCalling    txState = iota // client: request sent, nothing back
	txProceeding                // a provisional response sent or received
	txCompleted                 // a final (non-2xx for INVITE) response: absorbing retransmissions
	txConfirmed                 // server INVITE: the ACK of a non-2xx arrived
	txAccepted                  // server INVITE: a 2xx was sent (RFC 6026)
	txTerminated
)

var errTxTerminated = fmt.Errorf("sipbridge: %w", sip.ErrTransactionTerminated)

// ---- server transactions

// serverTx is the server side of one request the bridge serves.
type serverTx struct {
	l      *txLayer
	key    string
	method sip.RequestMethod
	p      path // where responses go: the request's source (symmetric response routing)

	txCore
	req      *sip.Request  // the request; nil once answered finally
	last     []byte        // UDP: the last response, resent on a retransmitted request
	gWait    time.Duration // Timer G's next interval
	hAt      time.Time     // Timer H's deadline
	cancel   bool          // a CANCEL arrived
	onCancel []sip.FnTxCancel
	release  func() // hands the admission bound back (once, at the final response)
}

// txCore is what server and client transactions share: the lock, the state, the
// timer and the end, seen through Done, Err and OnTerminate.
type txCore struct {
	mu     sync.Mutex
	state  txState
	timer  *time.Timer
	done   chan struct{}
	err    error
	onTerm []sip.FnTxTerminate
}

func newTxCore() txCore { return txCore{done: make(chan struct{})} }

func (c *txCore) Done() <-chan struct{} { return c.done }

func (c *txCore) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// OnTerminate registers f to run when the transaction ends; false when it has ended.
func (c *txCore) OnTerminate(f sip.FnTxTerminate) bool {
	return addUnlessEnded(&c.mu, &c.state, &c.onTerm, f)
}

// finishLocked ends the transaction with err (the first error given stays): it stops
// the timer and closes Done, and returns the OnTerminate functions to run once the
// lock is released. It returns false when the transaction had ended already. The
// caller holds mu.
func (c *txCore) finishLocked(err error) ([]sip.FnTxTerminate, bool) {
	if c.state == txTerminated {
		return nil, false
	}
	c.state = txTerminated
	if c.err == nil {
		c.err = err
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	fs := c.onTerm
	c.onTerm = nil
	close(c.done)
	return fs, true
}

var _ sip.ServerTransaction = (*serverTx)(nil)

func newServerTx(l *txLayer, key string, req *sip.Request, p path) *serverTx {
	return &serverTx{l: l, key: key, method: req.Method, p: p, req: req, txCore: newTxCore()}
}

// Respond sends res, a response to the transaction's request, along its path, and returns
// the error of writing it. A response that cannot be delivered ends the transaction with
// an error wrapping sip.ErrTransactionTransport. To a peer, a final response is queued on
// the peer's link and Respond waits until the link has written it or given up; a
// provisional one is not waited for.
func (t *serverTx) Respond(res *sip.Response) error { return t.respond(res, true) }

// respondAsync is Respond for the transports' readers: it never waits on a link.
func (t *serverTx) respondAsync(res *sip.Response) error { return t.respond(res, false) }

func (t *serverTx) respond(res *sip.Response, waitWrite bool) error {
	code := res.StatusCode
	final := code >= 200
	t.mu.Lock()
	if t.state == txTerminated {
		t.mu.Unlock()
		return errTxTerminated
	}
	wasAccepted := t.state == txAccepted
	if t.state != txProceeding && t.state != txCalling {
		// Answered finally already: only a 2xx to an INVITE passes again (RFC 6026).
		if !(wasAccepted && final && code < 300) {
			t.mu.Unlock()
			return nil
		}
	}
	var wait time.Duration // the timer to arm
	endNow := false        // the transaction ends once res is written
	switch {
	case !final:
		t.state = txProceeding
	case t.method == sip.INVITE && code < 300:
		// RFC 6026: over UDP the transaction stays (Timer L) to absorb the INVITE's
		// retransmissions; the 2xx's own retransmissions are end to end.
		t.state = txAccepted
		if t.p.kind == tpUDP {
			if !wasAccepted {
				wait = 64 * t1
			}
		} else {
			endNow = true
		}
	case t.p.kind == tpP2P:
		t.state = txCompleted // peers send no ACK for a non-2xx, and never retransmit
		endNow = true
	case t.method == sip.INVITE:
		t.state = txCompleted
		t.hAt = time.Now().Add(64 * t1)
		if t.p.kind == tpUDP {
			t.gWait, wait = t1, t1 // Timer G
		} else {
			wait = 64 * t1 // Timer H: wait for the ACK
		}
	case t.p.kind == tpUDP:
		t.state = txCompleted
		wait = 64 * t1 // Timer J: answer retransmissions
	default:
		t.state = txCompleted
		endNow = true
	}
	var err error
	var result chan error
	async := t.p.kind == tpP2P
	if async {
		if waitWrite && final {
			result = make(chan error, 1)
		}
		err = t.l.b.send(t.p, res, func(werr error) {
			switch {
			case werr != nil && !final:
				t.l.b.responseLost(t.p.peer) // orphans.go: a provisional lost ends nothing by itself
			case werr != nil:
				t.l.b.lim.stats.responsesLost.Add(1)
				t.end(transportErr(werr))
			case endNow:
				t.Terminate()
			}
			if result != nil {
				result <- werr
			}
		})
	} else {
		err = t.writeLocked(res)
	}
	if t.state == txAccepted {
		t.last = nil // INVITE retransmissions are absorbed silently after a 2xx
	}
	var rel func()
	if final && !wasAccepted {
		t.finalLocked()
		rel = t.takeRelease()
	}
	if wait > 0 && err == nil {
		t.armLocked(wait)
	}
	t.mu.Unlock()
	if rel != nil {
		rel()
	}
	if err != nil {
		switch {
		case async && !final:
			t.l.b.responseLost(t.p.peer)
		case async:
			t.l.b.lim.stats.responsesLost.Add(1)
			fallthrough
		default:
			t.end(transportErr(err))
		}
		return err
	}
	if endNow && !async {
		t.Terminate()
	}
	if result != nil {
		select {
		case err := <-result:
			return err
		case <-t.l.b.ctx.Done():
			return ErrClosed
		}
	}
	return nil
}

func transportErr(err error) error {
	return fmt.Errorf("sipbridge: %w: %w", sip.ErrTransactionTransport, err)
}

// writeLocked sends res; over UDP the encoded form is kept for retransmissions.
func (t *serverTx) writeLocked(res *sip.Response) error {
	if t.p.kind != tpUDP {
		return t.l.b.send(t.p, res, nil)
	}
	buf := getBuf()
	encodeTo(buf, res)
	t.last = append(t.last[:0], buf.Bytes()...)
	putBuf(buf)
	return t.l.b.sendBytes(t.p, t.last)
}

// finalLocked drops what the transaction no longer needs once answered finally.
func (t *serverTx) finalLocked() {
	t.req = nil
	t.onCancel = nil
}

// holdRelease gives the transaction rel, the admission bound it holds, to run once at its
// final response or end. When the transaction has its final answer or ended already
// (a Close ended it meanwhile), rel runs at once and holdRelease returns false.
func (t *serverTx) holdRelease(rel func()) bool {
	t.mu.Lock()
	if t.state == txTerminated || (t.state != txCalling && t.state != txProceeding) {
		t.mu.Unlock()
		rel()
		return false
	}
	t.release = rel
	t.mu.Unlock()
	return true
}

func (t *serverTx) takeRelease() func() {
	rel := t.release
	t.release = nil
	if rel == nil {
		return func() {}
	}
	return rel
}

// armLocked (re)starts the transaction's timer.
func (t *serverTx) armLocked(d time.Duration) {
	if t.timer == nil {
		t.timer = time.AfterFunc(d, t.fire)
		return
	}
	t.timer.Reset(d)
}

// fire runs Timers G, H, I, J and L.
func (t *serverTx) fire() {
	t.mu.Lock()
	switch t.state {
	case txCompleted:
		if t.method == sip.INVITE && t.p.kind == tpUDP {
			if now := time.Now(); now.Before(t.hAt) { // Timer G: retransmit the answer
				_ = t.l.b.sendBytes(t.p, t.last)
				t.gWait = min(2*t.gWait, t2)
				t.armLocked(min(t.gWait, t.hAt.Sub(now)))
				t.mu.Unlock()
				return
			}
		}
	case txTerminated:
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	t.Terminate() // Timers H, I, J, L
}

// retransmitted handles a retransmission of the request: the last answer goes again.
func (t *serverTx) retransmitted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p.kind == tpUDP && t.last != nil && t.state != txTerminated && t.state != txAccepted {
		_ = t.l.b.sendBytes(t.p, t.last)
	}
}

// acked handles an ACK matching the transaction (an INVITE's): the ACK of a non-2xx
// answer ends it (absorbed, true); after a 2xx the ACK is end to end (false: the proxy
// forwards it).
func (t *serverTx) acked() bool {
	t.mu.Lock()
	switch t.state {
	case txAccepted:
		t.mu.Unlock()
		return false
	case txCompleted:
		t.state = txConfirmed
		t.last = nil
		if t.p.kind == tpUDP {
			t.armLocked(t4) // Timer I
			t.mu.Unlock()
			return true
		}
		t.mu.Unlock()
		t.Terminate()
		return true
	}
	t.mu.Unlock()
	return true
}

// cancelled handles a CANCEL of the transaction (already answered 200 by the layer): the
// OnCancel functions run once, while the transaction has no final answer. It reports
// whether this call cancelled it; first (if not nil) runs before the functions when it did.
func (t *serverTx) cancelled(c *sip.Request, first func()) bool {
	t.mu.Lock()
	if t.cancel || (t.state != txProceeding && t.state != txCalling) {
		t.mu.Unlock()
		return false
	}
	t.cancel = true
	fs := t.onCancel
	t.onCancel = nil
	t.mu.Unlock()
	if first != nil {
		first()
	}
	for _, f := range fs {
		f(c)
	}
	return true
}

// Acks returns nil: the ACK of a non-2xx answer ends the transaction here, and the ACK of
// a 2xx is a request of its own, which the proxy forwards.
func (t *serverTx) Acks() <-chan *sip.Request { return nil }

// OnCancel registers f to run when a CANCEL for the transaction arrives. It returns false,
// without registering f, when the transaction was cancelled already or has its final
// answer.
func (t *serverTx) OnCancel(f sip.FnTxCancel) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cancel || (t.state != txProceeding && t.state != txCalling) {
		return false
	}
	t.onCancel = append(t.onCancel, f)
	return true
}

// addUnlessEnded appends f to *fs, under mu, unless the transaction in *state has
// ended; it reports whether it did.
func addUnlessEnded[F any](mu *sync.Mutex, state *txState, fs *[]F, f F) bool {
	mu.Lock()
	defer mu.Unlock()
	if *state == txTerminated {
		return false
	}
	*fs = append(*fs, f)
	return true
}

// Terminate ends the transaction (idempotent).
func (t *serverTx) Terminate() { t.end(errTxTerminated) }

func (t *serverTx) end(err error) {
	t.mu.Lock()
	fs, ok := t.finishLocked(err)
	if !ok {
		t.mu.Unlock()
		return
	}
	t.last, t.req, t.onCancel = nil, nil, nil
	rel := t.takeRelease()
	t.mu.Unlock()
	t.l.removeServer(t)
	rel()
	for _, f := range fs {
		f(t.key, err)
	}
}

// ---- client transactions

// clientTx is one request the bridge sends, and what comes back.
type clientTx struct {
	l      *txLayer
	key    string
	method sip.RequestMethod
	p      path
	resp   chan *sip.Response

	txCore
	req      *sip.Request  // as sent; nil once answered finally
	data     []byte        // UDP: the encoded request, for retransmissions
	ack      []byte        // UDP: the ACK of a non-2xx answer, resent on its retransmissions
	aWait    time.Duration // Timer A/E's next interval
	deadline time.Time     // Timer B/F
	onRetr   []sip.FnTxResponse
	dropped  int // provisionals dropped: the reader was slow
}

var _ sip.ClientTransaction = (*clientTx)(nil)

func (t *clientTx) Responses() <-chan *sip.Response { return t.resp }

// OnRetransmission registers f to run on retransmissions of the final response, which
// are not delivered on Responses; false once the transaction ended.
func (t *clientTx) OnRetransmission(f sip.FnTxResponse) bool {
	return addUnlessEnded(&t.mu, &t.state, &t.onRetr, f)
}

// Terminate ends the transaction unless it is absorbing retransmissions of its final
// response (Timers D and K end it then).
func (t *clientTx) Terminate() {
	t.mu.Lock()
	completed := t.state == txCompleted
	t.mu.Unlock()
	if !completed {
		t.end(sip.ErrTransactionTerminated)
	}
}

// fail ends the transaction with err unless it has its final response.
func (t *clientTx) fail(err error) {
	t.mu.Lock()
	final := t.state == txCompleted || t.state == txTerminated
	t.mu.Unlock()
	if !final {
		t.end(err)
	}
}

func (t *clientTx) end(err error) {
	t.mu.Lock()
	fs, ok := t.finishLocked(err)
	if !ok {
		t.mu.Unlock()
		return
	}
	t.req, t.data, t.ack, t.onRetr = nil, nil, nil, nil
	t.mu.Unlock()
	t.l.removeClient(t)
	for _, f := range fs {
		f(t.key, err)
	}
}

// start arms the timers of a request just sent: over UDP Timer A/E (retransmission) and
// B/F (timeout), over reliable transports B/F only, and none for an INVITE to a peer (the
// peer sends no 100 Trying: Timer C, the proxy core's, bounds it).
func (t *clientTx) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.state != txCalling && t.state != txProceeding:
		return // answered finally or ended already (a fast answer, a Close)
	case t.p.kind == tpP2P && t.method == sip.INVITE:
		return
	case t.state == txProceeding && t.method == sip.INVITE:
		return // a provisional came first: Timer C, the proxy core's, bounds it
	}
	t.deadline = time.Now().Add(64 * t1)
	if t.p.kind == tpUDP {
		if t.state == txCalling {
			t.aWait = t1
		} // else a provisional came first: deliver set Timer E to T2
		t.timer = time.AfterFunc(t.aWait, t.fire)
		return
	}
	t.timer = time.AfterFunc(64*t1, t.fire)
}

func (t *clientTx) fire() {
	t.mu.Lock()
	switch t.state {
	case txCalling, txProceeding:
		now := time.Now()
		if !now.Before(t.deadline) {
			t.mu.Unlock()
			t.end(fmt.Errorf("sipbridge: timer B/F: %w", sip.ErrTransactionTimeout))
			return
		}
		if t.p.kind == tpUDP && t.data != nil { // Timer A/E: retransmit
			_ = t.l.b.sendBytes(t.p, t.data)
			if t.method == sip.INVITE {
				t.aWait *= 2
			} else if t.state == txProceeding {
				t.aWait = t2
			} else {
				t.aWait = min(2*t.aWait, t2)
			}
			t.timer.Reset(min(t.aWait, t.deadline.Sub(now)))
		} else {
			t.timer.Reset(t.deadline.Sub(now))
		}
		t.mu.Unlock()
	case txCompleted: // Timers D and K
		t.mu.Unlock()
		t.end(sip.ErrTransactionTerminated)
	default:
		t.mu.Unlock()
	}
}

// deliver hands res, a response matching the transaction, to it; false when the
// transaction has ended (res is then a stray). It never blocks.
func (t *clientTx) deliver(res *sip.Response) bool {
	code := res.StatusCode
	t.mu.Lock()
	switch t.state {
	case txTerminated:
		t.mu.Unlock()
		return false
	case txCompleted:
		// A retransmitted final answer: ACK it again (INVITE over UDP).
		if t.ack != nil {
			_ = t.l.b.sendBytes(t.p, t.ack)
		}
		fs := t.onRetr
		t.mu.Unlock()
		for _, f := range fs {
			f(res)
		}
		return true
	}
	if code < 200 {
		if t.state == txCalling {
			t.state = txProceeding
			if t.method == sip.INVITE && t.timer != nil {
				t.timer.Stop() // no more retransmissions; Timer C is the proxy core's
			} else if t.p.kind == tpUDP {
				t.aWait = t2
			}
		}
		if len(t.resp) < cap(t.resp)-1 {
			t.resp <- res
		} else {
			t.dropped++
		}
		t.mu.Unlock()
		return true
	}
	t.resp <- res // the first final answer: there is always room
	inv := t.method == sip.INVITE
	switch {
	case inv && code < 300 && t.p.kind == tpP2P:
		// Over a stream the 2xx ends the transaction: a further 2xx (another fork's) is
		// forwarded statelessly (RFC 3261 §16.7 step 10).
		t.mu.Unlock()
		t.end(sip.ErrTransactionTerminated)
		return true
	case inv && code < 300:
		// From a UA: RFC 6026's Accepted state (Timer M) absorbs the 2xx's
		// retransmissions (the OnRetransmission functions see them), as sipgo's
		// transaction did: the ACK on its way from the caller answers them.
		t.req, t.data = nil, nil
		t.state = txCompleted
		if t.timer != nil {
			t.timer.Reset(64 * t1)
		} else {
			t.timer = time.AfterFunc(64*t1, t.fire)
		}
		t.mu.Unlock()
		return true
	case inv && t.p.kind != tpP2P:
		// The ACK of a non-2xx answer, hop by hop (§17.1.1.3); peers need none.
		ack := ackNon2xx(t.req, res)
		if t.p.kind == tpUDP {
			buf := getBuf()
			encodeTo(buf, ack)
			t.ack = bytes.Clone(buf.Bytes())
			putBuf(buf)
			_ = t.l.b.sendBytes(t.p, t.ack)
		} else {
			_ = t.l.b.send(t.p, ack, nil)
		}
	}
	t.req, t.data = nil, nil
	if t.p.kind == tpUDP {
		t.state = txCompleted
		wait := t4 // Timer K
		if inv {
			wait = 32 * time.Second // Timer D
		}
		if t.timer != nil {
			t.timer.Reset(wait)
		} else { // answered before start armed anything
			t.timer = time.AfterFunc(wait, t.fire)
		}
		t.mu.Unlock()
		return true
	}
	t.mu.Unlock()
	t.end(sip.ErrTransactionTerminated)
	return true
}

// ackNon2xx builds the ACK of a non-2xx final answer to inv (RFC 3261 §17.1.1.3): the
// INVITE's Request-URI, top Via, From, Call-ID, CSeq number and Route set, the answer's To.
func ackNon2xx(inv *sip.Request, res *sip.Response) *sip.Request {
	ack := sip.NewRequest(sip.ACK, inv.Recipient)
	ack.SipVersion = inv.SipVersion
	if v := inv.Via(); v != nil {
		ack.AppendHeader(v)
	}
	for _, h := range inv.GetHeaders("Route") {
		ack.AppendHeader(h)
	}
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	if f := inv.From(); f != nil {
		ack.AppendHeader(f)
	}
	if to := res.To(); to != nil {
		ack.AppendHeader(to)
	}
	if c := inv.CallID(); c != nil {
		ack.AppendHeader(c)
	}
	if cs := inv.CSeq(); cs != nil {
		ack.AppendHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: sip.ACK})
	}
	ack.SetBody(nil)
	return ack
}

// errLink wraps a link failure for a transaction towards p.
func errLink(p peer.ID, err error) error {
	if errors.Is(err, ErrLinkDown) || errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrLinkDown, p, err)
}
