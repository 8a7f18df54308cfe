package sipbridge

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/mailbox"
)

// Messages that wait (issue 19): a MESSAGE for a user of this domain with no live device
// (the fork plan found no target) is sealed into the user's mailbox in the domain overlay
// and the sender gets 202 Accepted; when a device of the user registers at this node, the
// node takes the waiting messages and sends them to that device one at a time, oldest
// first, each after the last was answered with a 2xx, and acknowledges them once all were.
// The bridge leaves storing and reading to a MessageBox (the node's: package mailbox).
// What the node last read of a user's mailbox, less what it delivered since, is the state
// of the user's message-summary subscriptions at this node (RFC 3842; presence.go): a
// device that cannot take a MESSAGE (it answers 415, say) is told that messages wait;
// the node reads the mailbox again at each registration and each new subscription.

// MessageBox keeps messages for users with no live device.
type MessageBox interface {
	// Keep stores msg for its recipient. The errors of package mailbox say why not.
	Keep(ctx context.Context, msg mailbox.Message) error
	// Waiting returns the messages waiting for aor, oldest first, and a function that
	// acknowledges them once they were delivered.
	Waiting(ctx context.Context, aor domains.AOR) ([]mailbox.Delivered, func(context.Context) error, error)
}

// WithMessageBox makes the bridge keep MESSAGEs for users with no live device in m and
// deliver them when a device registers. Without it such a MESSAGE gets 480 (404 for a
// user nobody knows).
func WithMessageBox(m MessageBox) Option { return func(c *config) error { c.mbox = m; return nil } }

// maxDeliveries bounds the AORs whose waiting messages are being delivered at once.
const maxDeliveries = 64

// deliveries is the set of AORs whose waiting messages are being delivered.
type deliveries struct {
	mu sync.Mutex
	m  map[string]bool
}

func (d *deliveries) start(aor string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]bool{}
	}
	if d.m[aor] || len(d.m) >= maxDeliveries {
		return false
	}
	d.m[aor] = true
	return true
}

func (d *deliveries) done(aor string) {
	d.mu.Lock()
	delete(d.m, aor)
	d.mu.Unlock()
}

// storeMessage keeps a MESSAGE for aor, which has no live device (status is the plan's
// answer, 404 or 480); it reports whether it answered req.
func (b *Bridge) storeMessage(req *sip.Request, st sip.ServerTransaction, aor domains.AOR, status int) bool {
	mb := b.cfg.mbox
	if mb == nil || req.From() == nil || req.CallID() == nil || req.CSeq() == nil {
		return false
	}
	from, err := domains.AORFromURI(&req.From().Address)
	if err != nil {
		return false
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	msg := mailbox.Message{From: from.String(), To: aor.String(), CallID: req.CallID().Value(), CSeq: req.CSeq().SeqNo,
		ContentType: ct, Body: req.Body()}
	ctx, cancel := context.WithTimeout(b.ctx, 2*b.cfg.locTimeout)
	err = mb.Keep(ctx, msg)
	cancel()
	code, reason := 202, "Accepted: the message waits for the recipient"
	switch {
	case err == nil:
	case errors.Is(err, mailbox.ErrNoMailbox) && status == 404:
		code, reason = 404, "Not Found"
	case errors.Is(err, mailbox.ErrTooLarge):
		code, reason = 413, "Request Entity Too Large: a message that waits holds at most 2 KiB"
	case errors.Is(err, mailbox.ErrBadMessage):
		code, reason = 400, "Bad Request: "+err.Error()
	case errors.Is(err, mailbox.ErrMailboxFull), errors.Is(err, mailbox.ErrSenderFull):
		code, reason = 480, "Temporarily Unavailable: the recipient's mailbox is full"
	default:
		b.log.Debug("message not kept", "to", aor.String(), "err", err)
		code, reason = 480, "Temporarily Unavailable"
	}
	b.observeCall(req, code)
	if err := st.Respond(b.newResponse(req, code, reason)); err != nil {
		b.log.Debug("respond failed", "err", err)
	}
	return true
}

// deliverWaiting sends the messages waiting for aor to its device registered last at this
// node, in the background.
func (b *Bridge) deliverWaiting(aor domains.AOR) {
	if b.cfg.mbox == nil || !b.delivering.start(aor.String()) {
		return
	}
	if !b.spawn(func() {
		defer b.delivering.done(aor.String())
		b.deliver(aor)
	}) {
		b.delivering.done(aor.String())
	}
}

func (b *Bridge) deliver(aor domains.AOR) {
	ctx, cancel := context.WithTimeout(b.ctx, 4*b.cfg.locTimeout)
	msgs, ack, err := b.cfg.mbox.Waiting(ctx, aor)
	cancel()
	if err != nil {
		b.log.Debug("reading waiting messages failed", "aor", aor.String(), "err", err)
		return
	}
	b.presenceWaiting(aor, len(msgs)) // presence.go: the message-summary package
	for i, m := range msgs {
		t, ok := b.reg.target(aor)
		if !ok {
			return // the device is gone: they wait on
		}
		h := hop{uri: &t.uri, dst: t.dst, dstTransport: t.tp}
		if code := b.sendWaiting(aor, h, m); code < 200 || code >= 300 {
			b.log.Debug("delivering a waiting message failed", "aor", aor.String(), "status", code)
			return
		}
		b.presenceWaiting(aor, len(msgs)-i-1)
	}
	if len(msgs) == 0 || ack == nil {
		return
	}
	actx, acancel := context.WithTimeout(b.ctx, 4*b.cfg.locTimeout)
	defer acancel()
	if err := ack(actx); err != nil {
		b.log.Debug("acknowledging waiting messages failed", "aor", aor.String(), "err", err)
	}
}

// sendWaiting sends one waiting message to the device at h and returns its final status
// (0 when it could not be sent or the node closed).
func (b *Bridge) sendWaiting(aor domains.AOR, h hop, m mailbox.Delivered) int {
	req := sip.NewRequest(sip.MESSAGE, *h.uri.Clone())
	var fu sip.Uri
	if err := sip.ParseUri(m.From, &fu); err != nil {
		return 0
	}
	from := &sip.FromHeader{Address: fu, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor.URI()})
	cid := sip.CallIDHeader(m.CallID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: m.CSeq, MethodName: sip.MESSAGE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("Date", m.Time.UTC().Format(time.RFC1123)))
	if m.ContentType != "" && !strings.ContainsAny(m.ContentType, "\r\n") {
		req.AppendHeader(sip.NewHeader("Content-Type", m.ContentType))
	}
	req.SetBody(m.Body)
	b.addUAVia(req, req, h)
	p, err := b.pathTo(h)
	if err != nil {
		return 0
	}
	ct, err := b.txl.request(p, req)
	if err != nil {
		return 0
	}
	defer ct.Terminate()
	return waitFinal(b.ctx, ct) // presence.go
}
