package domains

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// mailQueue is a queue of sender's messages to alice written by w at seq,
// n messages taken at t0 waiting an hour, in the sender's probe-0 slot.
func mailQueue(w signer, recipient crypto.PubKey, sender string, seq uint64, n int) *MailQueue {
	tag := SenderTag(alice, sender)
	q := &MailQueue{AOR: alice.String(), Slot: SlotOf(alice, tag, 0), Sender: tag, Writer: w.id, Seq: seq,
		Expires: t0.Add(time.Hour), Recipient: recipient}
	for i := range n {
		q.Messages = append(q.Messages, SealedMessage{ID: bytes.Repeat([]byte{byte(i + 1)}, MailIDSize), Time: t0,
			Expires: t0.Add(time.Hour), Box: []byte(fmt.Sprintf("ciphertext %d", i))})
	}
	return q
}

func mailAck(t testing.TB, s signer, rk crypto.PrivKey, q *MailQueue, ackSeq uint64) *MailAck {
	t.Helper()
	a := &MailAck{AOR: q.AOR, Slot: q.Slot, Acked: []AckedQueue{{Writer: q.Writer, Seq: ackSeq}}, Expires: q.Expires, Signer: s.id}
	if err := a.Sign(rk); err != nil {
		t.Fatal(err)
	}
	return a
}

func sealMail(t testing.TB, r interface {
	Seal(crypto.PrivKey) ([]byte, error)
}, k crypto.PrivKey) []byte {
	t.Helper()
	v, err := r.Seal(k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMailValidator(t *testing.T) {
	w, rn, rogue := newSigner(t), newSigner(t), newSigner(t)
	uk, _ := GenerateUserKey()
	v := MailValidator{Domain: "pastry", Now: func() time.Time { return t0.Add(time.Minute) }}
	q := mailQueue(w, uk.GetPublic(), "sip:bob@far", 1, 2)
	key := MailSlotKey(alice, q.Slot)
	if err := v.Validate(key, sealMail(t, q, w.key)); err != nil {
		t.Fatalf("valid queue: %v", err)
	}
	if err := v.Validate(key, sealMail(t, mailAck(t, rn, uk, q, 1), rn.key)); err != nil {
		t.Fatalf("valid ack: %v", err)
	}
	mod := func(f func(q *MailQueue)) *MailQueue {
		c := mailQueue(w, uk.GetPublic(), "sip:bob@far", 1, 2)
		f(c)
		return c
	}
	otherSlot := (q.Slot + 1) % MailSlots
	cases := []struct {
		name  string
		value []byte
		key   string
		want  error
	}{
		{"a queue sealed by another node than its writer", sealMail(t, q, rogue.key), key, ErrWrongSigner},
		{"a queue in a slot its sender and probe do not give", sealMail(t, mod(func(q *MailQueue) { q.Slot = otherSlot }), w.key), MailSlotKey(alice, otherSlot), ErrMailSlot},
		{"a queue under another slot's key", sealMail(t, q, w.key), MailSlotKey(alice, otherSlot), ErrWrongKey},
		{"a queue under another user's key", sealMail(t, q, w.key), MailSlotKey(mustAOR(t, "sip:bob@pastry"), q.Slot), ErrWrongKey},
		{"a probe out of range", sealMail(t, mod(func(q *MailQueue) { q.Probe = MailSlots }), w.key), key, ErrBadRecord},
		{"another probe than its slot's", sealMail(t, mod(func(q *MailQueue) { q.Probe = 1 }), w.key), key, ErrMailSlot},
		{"too many messages", sealMail(t, mailQueue(w, uk.GetPublic(), "sip:bob@far", 1, MaxMailPerQueue+1), w.key), key, ErrBadRecord},
		{"no message", sealMail(t, mailQueue(w, uk.GetPublic(), "sip:bob@far", 1, 0), w.key), key, ErrBadRecord},
		{"an oversized message", sealMail(t, mod(func(q *MailQueue) { q.Messages[0].Box = make([]byte, MaxSealedMessage+1) }), w.key), key, ErrBadRecord},
		{"a message twice", sealMail(t, mod(func(q *MailQueue) { q.Messages[1].ID = q.Messages[0].ID }), w.key), key, ErrBadRecord},
		{"a short message ID", sealMail(t, mod(func(q *MailQueue) { q.Messages[1].ID = []byte{1} }), w.key), key, ErrBadRecord},
		{"a message waiting too long", sealMail(t, mod(func(q *MailQueue) {
			for i := range q.Messages {
				q.Messages[i].Expires = t0.Add(MaxMailRetention + time.Hour)
			}
			q.Expires = t0.Add(MaxMailRetention + time.Hour)
		}), w.key), key, ErrAhead},
		{"a message dated ahead", sealMail(t, mod(func(q *MailQueue) { q.Messages[0].Time = t0.Add(time.Hour) }), w.key), key, ErrAhead},
		{"a queue that outlives its messages", sealMail(t, mod(func(q *MailQueue) { q.Expires = t0.Add(2 * time.Hour) }), w.key), key, ErrBadRecord},
		{"an expired queue", sealMail(t, mod(func(q *MailQueue) {
			for i := range q.Messages {
				q.Messages[i].Expires = t0
			}
			q.Expires = t0
		}), w.key), key, ErrExpired},
		{"a sequence number ahead", sealMail(t, mod(func(q *MailQueue) { q.Seq = SeqAt(t0.Add(time.Hour)) }), w.key), key, ErrAhead},
		{"an ack sealed by another node", sealMail(t, mailAck(t, rn, uk, q, 1), rogue.key), key, ErrWrongSigner},
		{"an ack with a forged signature", func() []byte {
			a := mailAck(t, rn, uk, q, 1)
			a.Acked[0].Seq = 2 // not what the recipient signed
			return sealMail(t, a, rn.key)
		}(), key, ErrBadOwner},
		{"an ack naming too many queues", func() []byte {
			a := mailAck(t, rn, uk, q, 1)
			for range MaxAckedQueues {
				a.Acked = append(a.Acked, AckedQueue{Writer: newSigner(t).id, Seq: 1})
			}
			_ = a.Sign(uk)
			return sealMail(t, a, rn.key)
		}(), key, ErrBadRecord},
		{"an ack ahead of the clock", sealMail(t, mailAck(t, rn, uk, q, SeqAt(t0.Add(time.Hour))), rn.key), key, ErrAhead},
		{"an oversized record", make([]byte, MaxMailRecordSize+1), key, ErrRecordTooBig},
		{"a binding in the mail namespace", sealMail(t, binding(w, alice.String(), 1), w.key), key, ErrBadRecord},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var reasons []string
			v := v
			v.OnRefuse = func(r string) { reasons = append(reasons, r) }
			if err := v.Validate(c.key, c.value); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if len(reasons) != 1 || reasons[0] == "" {
				t.Errorf("reasons %v", reasons)
			}
		})
	}
}

func TestSlotOf(t *testing.T) {
	tag := SenderTag(alice, "sip:bob@far")
	seen := map[int]bool{}
	for p := range MailSlots {
		s := SlotOf(alice, tag, p)
		if s < 0 || s >= MailSlots || seen[s] {
			t.Fatalf("probe %d: slot %d (seen: %v)", p, s, seen)
		}
		seen[s] = true
	}
	if SlotOf(alice, tag, MailSlots) != -1 || SlotOf(alice, tag, -1) != -1 {
		t.Error("a probe out of range has a slot")
	}
	if SlotOf(alice, SenderTag(alice, "sip:carol@far"), 0) == SlotOf(alice, tag, 0) &&
		SlotOf(alice, SenderTag(alice, "sip:carol@far"), 1) == SlotOf(alice, tag, 1) {
		t.Error("two senders probe in the same order")
	}
}

func TestMailSupersedes(t *testing.T) {
	w, w2, rn := newSigner(t), newSigner(t), newSigner(t)
	uk, _ := GenerateUserKey()
	rogueKey, _ := GenerateUserKey()
	rk := uk.GetPublic()
	v := MailValidator{Domain: "pastry", Now: func() time.Time { return t0.Add(time.Minute) }}
	q5 := mailQueue(w, rk, "sip:bob@far", 5, 2)
	key := MailSlotKey(alice, q5.Slot)
	lapsed := mailQueue(w2, rk, "sip:bob@far", 1, 1)
	lapsed.Messages[0].Time, lapsed.Messages[0].Expires, lapsed.Expires = t0.Add(-2*time.Hour), t0.Add(time.Minute), t0.Add(time.Minute)
	both := mailAck(t, rn, uk, q5, 5)
	both.Acked = append(both.Acked, AckedQueue{Writer: w2.id, Seq: 7})
	_ = both.Sign(uk)
	signerOf := func(r MailRecord) crypto.PrivKey {
		switch r := r.(type) {
		case *MailQueue:
			for _, s := range []signer{w, w2} {
				if s.id == r.Writer {
					return s.key
				}
			}
		case *MailAck:
			return rn.key
		}
		return nil
	}
	cases := []struct {
		name       string
		in, stored MailRecord
		at         time.Time
		want       bool
	}{
		{"the writer appends (higher seq)", mailQueue(w, rk, "sip:bob@far", 6, 3), q5, t0, true},
		{"the writer replays an older version", mailQueue(w, rk, "sip:bob@far", 4, 1), q5, t0, false},
		{"another writer over a live queue", mailQueue(w2, rk, "sip:bob@far", 50, 1), q5, t0, false},
		{"another writer over a lapsed queue", mailQueue(w2, rk, "sip:bob@far", 50, 1), lapsed, t0.Add(2 * time.Minute), true},
		{"the recipient's ack of that version", mailAck(t, rn, uk, q5, 5), q5, t0, true},
		{"the recipient's ack of an older version", mailAck(t, rn, uk, q5, 4), q5, t0, false},
		{"an ack by another key", mailAck(t, rn, rogueKey, q5, 5), q5, t0, false},
		{"an ack naming another writer", mailAck(t, rn, uk, mailQueue(w2, rk, "sip:bob@far", 5, 1), 5), q5, t0, false},
		{"the writer's new messages over the ack", mailQueue(w, rk, "sip:bob@far", 6, 1), mailAck(t, rn, uk, q5, 5), t0, true},
		{"a replay of the acknowledged queue", q5, mailAck(t, rn, uk, q5, 5), t0, false},
		{"another writer over an ack", mailQueue(w2, rk, "sip:bob@far", 1, 1), mailAck(t, rn, uk, q5, 5), t0, true},
		{"one ack of both queues two writers left in the slot", both, q5, t0, true},
		{"... the other writer's queue too", both, mailQueue(w2, rk, "sip:carol@far", 7, 1), t0, true},
		{"an ack of both over an ack of one", both, mailAck(t, rn, uk, q5, 5), t0, true},
		{"an ack of one over an ack of both", mailAck(t, rn, uk, q5, 5), both, t0, false},
		{"a newer ack", mailAck(t, rn, uk, q5, 6), mailAck(t, rn, uk, q5, 5), t0, true},
		{"an older ack", mailAck(t, rn, uk, q5, 4), mailAck(t, rn, uk, q5, 5), t0, false},
		{"another key's ack over an ack", mailAck(t, rn, rogueKey, q5, 9), mailAck(t, rn, uk, q5, 5), t0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := v
			v.Now = func() time.Time { return c.at }
			in := sealMail(t, c.in, signerOf(c.in))
			st := sealMail(t, c.stored, signerOf(c.stored))
			i, err := v.Select(key, [][]byte{in, st})
			if err != nil {
				t.Fatal(err)
			}
			if got := i == 0; got != c.want {
				t.Errorf("incoming kept %v, want %v", got, c.want)
			}
		})
	}
}

func TestMailboxKeyValidator(t *testing.T) {
	n, rogue := newSigner(t), newSigner(t)
	uk, _ := GenerateUserKey()
	v := MailboxKeyValidator{Domain: "pastry", Now: func() time.Time { return t0 }}
	key := MailboxKeyKey(alice)
	mk := func(owner crypto.PrivKey, node signer, seq uint64) []byte {
		k := &MailboxKey{AOR: alice.String(), Node: node.id, KEM: bytes.Repeat([]byte{9}, 32), Seq: seq, Expires: t0.Add(24 * time.Hour)}
		if err := k.Sign(owner); err != nil {
			t.Fatal(err)
		}
		return sealMail(t, k, node.key)
	}
	good := mk(uk, n, 5)
	if err := v.Validate(key, good); err != nil {
		t.Fatalf("valid: %v", err)
	}
	if err := v.Validate(key, mk(n.key, n, 5)); err != nil {
		t.Fatalf("a keyless user's key owned by its node: %v", err)
	}
	if err := v.Validate(MailboxKeyKey(mustAOR(t, "sip:bob@pastry")), good); !errors.Is(err, ErrWrongKey) {
		t.Errorf("under another user's key: %v", err)
	}
	tampered := func() []byte {
		k := &MailboxKey{AOR: alice.String(), Node: n.id, KEM: bytes.Repeat([]byte{9}, 32), Seq: 5, Expires: t0.Add(24 * time.Hour)}
		_ = k.Sign(uk)
		k.KEM = bytes.Repeat([]byte{7}, 32) // the attacker's key under alice's signature
		return sealMail(t, k, n.key)
	}()
	if err := v.Validate(key, tampered); !errors.Is(err, ErrBadOwner) {
		t.Errorf("a KEM key the owner did not sign: %v", err)
	}
	if err := v.Validate(key, mk(uk, rogue, 5)[:40]); !errors.Is(err, ErrBadRecord) {
		t.Errorf("truncated: %v", err)
	}
	// First come, first served per owner.
	if i, _ := v.Select(key, [][]byte{mk(rogue.key, rogue, SeqAt(t0)), good}); i != 1 {
		t.Error("another owner replaced a live mailbox key")
	}
	if i, _ := v.Select(key, [][]byte{mk(uk, n, 6), good}); i != 0 {
		t.Error("the owner could not refresh its key")
	}
}
