package mailbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/crypto"
)

func aor(t testing.TB, s string) domains.AOR {
	t.Helper()
	a, err := domains.ParseAOR(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func msg(from, to string, cseq uint32, body string) Message {
	return Message{From: from, To: to, CallID: "call-" + from, CSeq: cseq, ContentType: "text/plain", Body: []byte(body)}
}

func bodies(b *Batch) []string {
	var out []string
	for _, m := range b.Messages {
		out = append(out, string(m.Body))
	}
	return out
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestStoreFetchAck: messages for alice, offline, taken by three nodes of
// her domain (one a retransmission through another node), are fetched
// once, in order, by a node holding her user key; not by a node without
// it; gone after the ack; a message after the ack waits on its own.
func TestStoreFetchAck(t *testing.T) {
	clk := newTestClock()
	ns := testNodes(t, 10, clk)
	ctx := testCtx(t)
	alice := publishedAlice(t, ctx, ns[0].mb)
	to := alice.AOR.String()
	steps := []struct {
		n int
		m Message
	}{
		{5, msg("sip:bob@far.example", to, 1, "bob 1")},
		{6, msg("sip:carol@pastry", to, 1, "carol 1")},
		{5, msg("sip:bob@far.example", to, 2, "bob 2")},
		{7, msg("sip:bob@far.example", to, 1, "bob 1")}, // retransmitted through another proxy
	}
	for _, s := range steps {
		clk.Advance(time.Millisecond)
		s.m.Owner = alice.UserKey.GetPublic()
		if _, err := ns[s.n].mb.Store(ctx, s.m); err != nil {
			t.Fatalf("store %q at node %d: %v", s.m.Body, s.n, err)
		}
	}
	// Stored twice at one node: a retransmission of the same MESSAGE.
	if _, err := ns[5].mb.Store(ctx, msg("sip:bob@far.example", to, 2, "bob 2")); err != nil {
		t.Fatal(err)
	}

	b, err := ns[1].mb.Fetch(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(bodies(b), ","); got != "bob 1,carol 1,bob 2" {
		t.Fatalf("fetched %q", got)
	}
	if b.Messages[0].From != "sip:bob@far.example" || b.Messages[0].ContentType != "text/plain" || b.Messages[0].To != to {
		t.Errorf("message: %+v", b.Messages[0])
	}
	// A node without alice's key reads nothing.
	other, err := ns[8].mb.Fetch(ctx, Recipient{AOR: alice.AOR})
	if err != nil || len(other.Messages) != 0 {
		t.Fatalf("a node without the key: %v, %v", bodies(other), err)
	}
	if err := ns[1].mb.Ack(ctx, alice, b); err != nil {
		t.Fatal(err)
	}
	again, err := ns[0].mb.Fetch(ctx, alice)
	if err != nil || len(again.Messages) != 0 {
		t.Fatalf("after the ack, another node of alice fetched %v, %v", bodies(again), err)
	}

	clk.Advance(time.Millisecond)
	if _, err := ns[5].mb.Store(ctx, msg("sip:bob@far.example", to, 3, "bob 3")); err != nil {
		t.Fatal(err)
	}
	b, err = ns[0].mb.Fetch(ctx, alice)
	if err != nil || strings.Join(bodies(b), ",") != "bob 3" {
		t.Fatalf("after the ack and a new message: %v, %v", bodies(b), err)
	}
	if err := ns[0].mb.Ack(ctx, alice, b); err != nil {
		t.Fatal(err)
	}
	// The writers forget what was acknowledged.
	for _, n := range []int{5, 6, 7} {
		if _, err := ns[n].mb.Republish(ctx); err != nil {
			t.Fatal(err)
		}
		if q := ns[n].mb.Queues(); q != 0 {
			t.Errorf("node %d still re-stores %d queues", n, q)
		}
	}
}

// TestRetention: a message waits for the retention time and is gone after.
func TestRetention(t *testing.T) {
	clk := newTestClock()
	ns := testNodes(t, 4, clk, WithRetention(2*time.Hour))
	ctx := testCtx(t)
	alice := publishedAlice(t, ctx, ns[0].mb)
	if _, err := ns[1].mb.Store(ctx, msg("sip:bob@pastry", "sip:alice@pastry", 1, "hello")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	if b, err := ns[2].mb.Fetch(ctx, alice); err != nil || len(b.Messages) != 1 {
		t.Fatalf("within the retention time: %v, %v", b, err)
	}
	clk.Advance(time.Hour + time.Minute)
	if b, err := ns[2].mb.Fetch(ctx, alice); err != nil || len(b.Messages) != 0 {
		t.Fatalf("after the retention time: %v, %v", bodies(b), err)
	}
	if n, err := ns[1].mb.Republish(ctx); err != nil || n != 0 || ns[1].mb.Queues() != 0 {
		t.Errorf("the writer re-stored %d lapsed queues (%d held), %v", n, ns[1].mb.Queues(), err)
	}
}

// TestSenderBound: one sender fills at most MaxSenderQueues queues of
// MaxMailPerQueue messages for one recipient.
func TestSenderBound(t *testing.T) {
	clk := newTestClock()
	ns := testNodes(t, 4, clk)
	ctx := testCtx(t)
	publishedAlice(t, ctx, ns[0].mb)
	stored := 0
	var err error
	for i := range domains.MaxSenderQueues*domains.MaxMailPerQueue + 1 {
		if _, err = ns[1].mb.Store(ctx, msg("sip:spam@pastry", "sip:alice@pastry", uint32(i), "spam")); err != nil {
			break
		}
		stored++
	}
	if !errors.Is(err, ErrSenderFull) {
		t.Fatalf("after %d messages: %v, want ErrSenderFull", stored, err)
	}
	if stored != domains.MaxSenderQueues*domains.MaxMailPerQueue {
		t.Errorf("one sender stored %d messages, want %d", stored, domains.MaxSenderQueues*domains.MaxMailPerQueue)
	}
	// Another sender still gets through.
	if _, err := ns[1].mb.Store(ctx, msg("sip:bob@pastry", "sip:alice@pastry", 1, "hi")); err != nil {
		t.Errorf("another sender: %v", err)
	}
}

// TestFlood: a flood from many senders fills at most MailSlots queues; the
// rest is refused (the senders get an error, nothing is lost silently);
// once alice takes her messages, new ones get through again.
func TestFlood(t *testing.T) {
	clk := newTestClock()
	ns := testNodes(t, 4, clk)
	ctx := testCtx(t)
	alice := publishedAlice(t, ctx, ns[0].mb)
	accepted, full := 0, 0
	for i := range 60 {
		for j := range 3 {
			_, err := ns[1+i%3].mb.Store(ctx, msg(fmt.Sprintf("sip:spammer%d@pastry", i), "sip:alice@pastry", uint32(j), "spam"))
			switch {
			case err == nil:
				accepted++
			case errors.Is(err, ErrMailboxFull):
				full++
			default:
				t.Fatal(err)
			}
		}
	}
	if accepted > domains.MailSlots*domains.MaxMailPerQueue || full == 0 {
		t.Fatalf("flood: %d accepted, %d refused as full", accepted, full)
	}
	b, err := ns[2].mb.Fetch(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != accepted || len(b.Messages) > domains.MailSlots*domains.MaxMailPerQueue {
		t.Fatalf("alice has %d messages, %d were accepted", len(b.Messages), accepted)
	}
	t.Logf("flood of 180 messages from 60 senders: %d accepted in %d slots, %d refused", accepted, domains.MailSlots, full)
	if _, err := ns[1].mb.Store(ctx, msg("sip:friend@pastry", "sip:alice@pastry", 1, "hi")); !errors.Is(err, ErrMailboxFull) {
		t.Logf("a friend during the flood: %v", err) // may find a free slot if the flood left one
	}
	if err := ns[2].mb.Ack(ctx, alice, b); err != nil {
		t.Fatal(err)
	}
	if _, err := ns[1].mb.Store(ctx, msg("sip:friend@pastry", "sip:alice@pastry", 2, "hi again")); err != nil {
		t.Errorf("a friend after alice took her messages: %v", err)
	}
}

// TestForgedAckAndReplay: an ack signed without alice's key removes
// nothing; a replay of an acknowledged queue is refused by every storer.
func TestForgedAckAndReplay(t *testing.T) {
	clk := newTestClock()
	ns := testNodes(t, 5, clk)
	ctx := testCtx(t)
	alice := publishedAlice(t, ctx, ns[0].mb)
	if _, err := ns[1].mb.Store(ctx, msg("sip:bob@pastry", "sip:alice@pastry", 1, "secret")); err != nil {
		t.Fatal(err)
	}
	// The attacker fetches with its own key: nothing opens, but it learns
	// which queues exist, and acknowledges them with its own key.
	rogueKey, _ := domains.GenerateUserKey()
	rogue := Recipient{AOR: alice.AOR, UserKey: rogueKey}
	key := domains.MailSlotKey(alice.AOR, domains.SlotOf(alice.AOR, domains.SenderTag(alice.AOR, "sip:bob@pastry"), 0))
	raw, err := ns[4].ov.DHT().GetValue(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	q, err := domains.MailValidator{Domain: "pastry", Now: clk.Now}.Open(key, raw)
	if err != nil {
		t.Fatal(err)
	}
	queue := q.(*domains.MailQueue)
	forged := &domains.MailAck{AOR: queue.AOR, Slot: queue.Slot, Acked: []domains.AckedQueue{{Writer: queue.Writer, Seq: queue.Seq}},
		Expires: queue.Expires, Signer: ns[4].h.ID()}
	_ = forged.Sign(rogueKey)
	sealed, _ := forged.Seal(ns[4].key)
	_ = ns[4].ov.DHT().PutValue(ctx, key, sealed) // refused locally too: it does not supersede the queue
	b, err := ns[2].mb.Fetch(ctx, alice)
	if err != nil || strings.Join(bodies(b), ",") != "secret" {
		t.Fatalf("after a forged ack: %v, %v", bodies(b), err)
	}
	rb, _ := ns[4].mb.Fetch(ctx, rogue)
	if len(rb.Messages) != 0 {
		t.Fatalf("the attacker read %v", bodies(rb))
	}
	// Alice acks; the attacker replays the queue it saw.
	if err := ns[2].mb.Ack(ctx, alice, b); err != nil {
		t.Fatal(err)
	}
	for i, n := range ns {
		_ = n.ov.DHT().PutValue(ctx, key, raw)
		if got, err := n.mb.Fetch(ctx, alice); err != nil || len(got.Messages) != 0 {
			t.Errorf("node %d after a replay: %v, %v", i, bodies(got), err)
		}
	}
}

// TestMailboxKeyOwner: a mailbox name goes to its first owner; a sender
// that knows the recipient's owner key refuses a mailbox key of another.
func TestMailboxKeyOwner(t *testing.T) {
	clk := newTestClock()
	ns := testNodes(t, 4, clk)
	ctx := testCtx(t)
	dave := aor(t, "sip:dave@pastry")
	rogueKey, _ := domains.GenerateUserKey()
	if err := ns[3].mb.Publish(ctx, Recipient{AOR: dave, UserKey: rogueKey}); err != nil {
		t.Fatal(err)
	}
	uk, _ := domains.GenerateUserKey()
	if err := ns[0].mb.Publish(ctx, Recipient{AOR: dave, UserKey: uk}); !errors.Is(err, ErrOtherOwner) {
		t.Errorf("dave's node after an outsider claimed his mailbox: %v", err)
	}
	m := msg("sip:bob@pastry", dave.String(), 1, "for dave")
	m.Owner = uk.GetPublic()
	if _, err := ns[1].mb.Store(ctx, m); !errors.Is(err, ErrOwnerMismatch) {
		t.Errorf("a sender that knows dave's key: %v", err)
	}
	if _, err := ns[1].mb.Store(ctx, msg("sip:bob@pastry", "sip:nobody@pastry", 1, "x")); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("no mailbox: %v", err)
	}
}

// TestKeyless: a user without a user key has a mailbox its node owns:
// only that node reads it.
func TestKeyless(t *testing.T) {
	clk := newTestClock()
	ns := testNodes(t, 4, clk)
	ctx := testCtx(t)
	erin := Recipient{AOR: aor(t, "sip:erin@pastry")}
	if err := ns[2].mb.Publish(ctx, erin); err != nil {
		t.Fatal(err)
	}
	if _, err := ns[1].mb.Store(ctx, msg("sip:bob@pastry", erin.AOR.String(), 1, "for erin")); err != nil {
		t.Fatal(err)
	}
	if b, err := ns[3].mb.Fetch(ctx, erin); err != nil || len(b.Messages) != 0 {
		t.Errorf("another node read erin's mail: %v, %v", bodies(b), err)
	}
	if b, err := ns[2].mb.Fetch(ctx, erin); err != nil || strings.Join(bodies(b), ",") != "for erin" {
		t.Errorf("erin's node: %v, %v", bodies(b), err)
	}
}

// TestWriterRestart: a writer that lost its state continues the queue the
// overlay holds.
func TestWriterRestart(t *testing.T) {
	clk := newTestClock()
	ns := testNodes(t, 4, clk)
	ctx := testCtx(t)
	alice := publishedAlice(t, ctx, ns[0].mb)
	if _, err := ns[1].mb.Store(ctx, msg("sip:bob@pastry", "sip:alice@pastry", 1, "one")); err != nil {
		t.Fatal(err)
	}
	fresh, err := New(ns[1].ov.DHT(), "pastry", ns[1].key, WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	clk.Advance(time.Millisecond)
	if _, err := fresh.Store(ctx, msg("sip:bob@pastry", "sip:alice@pastry", 2, "two")); err != nil {
		t.Fatal(err)
	}
	if b, err := ns[2].mb.Fetch(ctx, alice); err != nil || strings.Join(bodies(b), ",") != "one,two" {
		t.Errorf("after the writer restarted: %v, %v", bodies(b), err)
	}
}

func TestBadInput(t *testing.T) {
	clk := newTestClock()
	ns := testNodes(t, 2, clk)
	ctx := testCtx(t)
	mb := ns[0].mb
	big := msg("sip:bob@pastry", "sip:alice@pastry", 1, strings.Repeat("x", MaxBody+1))
	for _, c := range []struct {
		m    Message
		want error
	}{
		{big, ErrTooLarge},
		{msg("sip:bob@pastry", "not a uri", 1, "x"), ErrBadMessage},
		{msg("sip:bob@pastry", "sip:alice@other", 1, "x"), ErrBadMessage},
		{msg("", "sip:alice@pastry", 1, "x"), ErrBadMessage},
		{Message{From: "sip:bob@pastry", To: "sip:alice@pastry"}, ErrBadMessage},
	} {
		if _, err := mb.Store(ctx, c.m); !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c.m.To, err, c.want)
		}
	}
	if err := mb.Publish(ctx, Recipient{AOR: aor(t, "sip:alice@other")}); !errors.Is(err, domains.ErrNotInDomain) {
		t.Errorf("publish outside the domain: %v", err)
	}
	if err := mb.Ack(ctx, Recipient{AOR: aor(t, "sip:alice@pastry")}, &Batch{}); !errors.Is(err, ErrBadMessage) {
		t.Errorf("ack of another recipient's batch: %v", err)
	}
	if _, err := New(ns[0].ov.DHT(), "pastry", ns[0].key, WithRetention(domains.MaxMailRetention+time.Hour)); err == nil {
		t.Error("a retention above the bound was accepted")
	}
	rsa, _, _ := crypto.GenerateKeyPair(crypto.RSA, 2048)
	if _, err := kemKey(rsa); !errors.Is(err, ErrBadKey) {
		t.Errorf("an RSA owner key: %v", err)
	}
	if err := mb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mb.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := mb.Store(ctx, msg("sip:bob@pastry", "sip:alice@pastry", 1, "x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Store after Close: %v", err)
	}
}

// TestLoneNode: a node alone in its domain (no peer to store at) keeps the key and the
// messages in its own store: they are stored, fetched in order and acknowledged. Before,
// every slot's store failed ("failed to find any peer in table") and the sender was told
// the mailbox was full.
func TestLoneNode(t *testing.T) {
	clk := newTestClock()
	n := testNodes(t, 1, clk)[0]
	ctx := testCtx(t)
	alice := publishedAlice(t, ctx, n.mb)
	for i, text := range []string{"one", "two"} {
		clk.Advance(time.Millisecond)
		if _, err := n.mb.Store(ctx, msg("sip:bob@pastry", "sip:alice@pastry", uint32(i+1), text)); err != nil {
			t.Fatalf("storing %q at a lone node: %v", text, err)
		}
	}
	b, err := n.mb.Fetch(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != 2 || string(b.Messages[0].Body) != "one" || string(b.Messages[1].Body) != "two" {
		t.Fatalf("fetched %d messages: %+v", len(b.Messages), b.Messages)
	}
	if err := n.mb.Ack(ctx, alice, b); err != nil {
		t.Fatal(err)
	}
	if b, err := n.mb.Fetch(ctx, alice); err != nil || len(b.Messages) != 0 {
		t.Fatalf("after the ack: %v, %v", b, err)
	}
}
