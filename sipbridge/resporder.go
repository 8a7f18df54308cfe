package sipbridge

import (
	"bytes"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// respOrder keeps a client transaction's responses from a UA in the order they
// arrived. sipgo hands every message it reads to a goroutine of its own before
// the transaction layer sees it, so a UA that sends 180 Ringing and 200 OK back
// to back can have the 200 reach the INVITE transaction first; the transaction
// then ignores the 180, and the caller never hears it ringing (sipp's strict
// scenarios count that as a failed call).
//
// The node's UDP reader (filterConn.ReadFrom) notes each provisional response
// it reads (provisional) and, before it hands on a final response of the same
// transaction, waits until that provisional has come out of the transaction
// (delivered, called by relay) or until maxWait has passed. The wait is
// normally a goroutine switch; maxWait bounds it when the transaction layer
// swallows a provisional (it ends, or was never ours).
type respOrder struct {
	mu      sync.Mutex
	pending map[string]pendingResp // client transaction key → last unseen provisional
	maxWait time.Duration
}

type pendingResp struct {
	seen chan struct{} // closed when the provisional came out of its transaction
	at   time.Time
}

// respOrderMax bounds the table: a UA flooding provisionals cannot grow it.
const respOrderMax = 8192

func newRespOrder() *respOrder {
	return &respOrder{pending: map[string]pendingResp{}, maxWait: 20 * time.Millisecond}
}

// read is called by the UDP reader for every datagram it hands to sipgo, in
// arrival order. It returns when data may go on.
func (o *respOrder) read(data []byte) {
	code, key, ok := responseKey(data)
	if !ok {
		return
	}
	now := time.Now()
	o.mu.Lock()
	if code < 200 {
		if p, ok := o.pending[key]; ok {
			close(p.seen) // an older provisional: only the latest is waited for
		}
		if len(o.pending) >= respOrderMax {
			o.purgeLocked(now)
		}
		if len(o.pending) < respOrderMax {
			o.pending[key] = pendingResp{seen: make(chan struct{}), at: now}
		}
		o.mu.Unlock()
		return
	}
	p, ok := o.pending[key]
	o.mu.Unlock()
	if !ok {
		return
	}
	t := time.NewTimer(o.maxWait)
	defer t.Stop()
	select {
	case <-p.seen:
	case <-t.C:
		o.mu.Lock()
		if q, ok := o.pending[key]; ok && q.seen == p.seen {
			close(p.seen)
			delete(o.pending, key)
		}
		o.mu.Unlock()
	}
}

// delivered is called when a provisional response came out of its client
// transaction.
func (o *respOrder) delivered(res *sip.Response) {
	key, ok := clientTxKey(res)
	if !ok {
		return
	}
	o.mu.Lock()
	if p, ok := o.pending[key]; ok {
		close(p.seen)
		delete(o.pending, key)
	}
	o.mu.Unlock()
}

// purgeLocked drops entries older than a second (their transactions have long
// had their final response or ended).
func (o *respOrder) purgeLocked(now time.Time) {
	for k, p := range o.pending {
		if now.Sub(p.at) > time.Second {
			close(p.seen)
			delete(o.pending, k)
		}
	}
}

// clientTxKey is the key responseKey derives from raw bytes, from a parsed
// response: top Via branch and CSeq method.
func clientTxKey(res *sip.Response) (string, bool) {
	via := res.Via()
	cseq := res.CSeq()
	if via == nil || cseq == nil {
		return "", false
	}
	branch, ok := via.Params.Get("branch")
	if !ok || branch == "" {
		return "", false
	}
	return branch + " " + string(cseq.MethodName), true
}

// responseKey returns the status code and client transaction key (top Via
// branch and CSeq method) of a raw SIP response, scanning only its header
// lines. ok is false for requests and for anything it cannot read; such
// messages are not ordered.
func responseKey(data []byte) (code int, key string, ok bool) {
	if !bytes.HasPrefix(data, []byte("SIP/2.0 ")) || len(data) < 11 {
		return 0, "", false
	}
	for _, c := range data[8:11] {
		if c < '0' || c > '9' {
			return 0, "", false
		}
		code = code*10 + int(c-'0')
	}
	_, rest, _ := bytes.Cut(data, []byte("\n"))
	var branch, method []byte
	for len(rest) > 0 && (branch == nil || method == nil) {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // end of headers
		}
		name, val, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		name = bytes.TrimSpace(name)
		switch {
		case branch == nil && (bytes.EqualFold(name, []byte("Via")) || bytes.EqualFold(name, []byte("v"))):
			branch = viaBranch(val)
			if branch == nil {
				return 0, "", false
			}
		case method == nil && bytes.EqualFold(name, []byte("CSeq")):
			f := bytes.Fields(val)
			if len(f) != 2 {
				return 0, "", false
			}
			method = f[1]
		}
	}
	if branch == nil || method == nil {
		return 0, "", false
	}
	return code, string(branch) + " " + string(method), true
}

// viaBranch returns the branch parameter of the first Via value in val.
func viaBranch(val []byte) []byte {
	first, _, _ := bytes.Cut(val, []byte(","))
	for _, p := range bytes.Split(first, []byte(";"))[1:] {
		k, v, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("branch")) {
			v = bytes.TrimSpace(v)
			if len(v) == 0 {
				return nil
			}
			return v
		}
	}
	return nil
}
