package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/hiersip/hiersip/domains"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// Errors of the mailbox. A proxy answers the sender 480 Temporarily
// Unavailable for ErrNoMailbox, ErrMailboxFull and ErrSenderFull, 413 for
// ErrTooLarge, 400 for ErrBadMessage.
var (
	ErrClosed        = fmt.Errorf("mailbox: closed: %w", net.ErrClosed)
	ErrNoMailbox     = errors.New("mailbox: the recipient has no mailbox")
	ErrOwnerMismatch = errors.New("mailbox: the recipient's mailbox key is not its owner's")
	ErrOtherOwner    = errors.New("mailbox: the recipient's mailbox belongs to another owner")
	ErrMailboxFull   = errors.New("mailbox: the recipient's mailbox is full")
	ErrSenderFull    = errors.New("mailbox: too many messages of this sender wait for the recipient")
	ErrTooLarge      = errors.New("mailbox: message too large")
	ErrBadMessage    = errors.New("mailbox: invalid message")
	ErrBadKey        = errors.New("mailbox: invalid key")
	ErrBusy          = errors.New("mailbox: this node holds too many queues")
)

// Limits of a message before sealing.
const (
	MaxBody        = 2 << 10 // bytes of a body (RFC 3428 page mode stays under 1300 over UDP)
	MaxContentType = 128
	MaxCallID      = 256
)

// Default settings.
const (
	DefaultRetention   = 7 * 24 * time.Hour
	DefaultKeyLifetime = 14 * 24 * time.Hour
	DefaultMaxQueues   = 4096
	keyCacheTTL        = time.Minute
	maxKeyCache        = 1024
	maxSeenPerAOR      = 1024
	maxSeenAORs        = 1024
	fetchParallel      = 8
)

// Message is a MESSAGE (RFC 3428) to store for a recipient with no live
// device.
type Message struct {
	From        string // the sender's AOR (canonical), as the proxy saw it
	To          string // the recipient's AOR
	CallID      string
	CSeq        uint32
	ContentType string
	Body        []byte
	// Owner, when known, is the owner key the recipient's device set or
	// binding names (nil: unknown). A mailbox key of another owner is then
	// refused (ErrOwnerMismatch): an outsider who claimed a free mailbox
	// name cannot read messages of a user the domain knows.
	Owner crypto.PubKey
}

// Receipt tells where a stored message waits.
type Receipt struct {
	ID      []byte
	Slot    int
	Expires time.Time
}

// Recipient is a user whose waiting messages this node reads: its AOR, its
// user key (nil for a user without one: the node's own key then owns the
// mailbox, and only this node can read it) and, in an enrolled domain, the
// node's certificate for the AOR.
type Recipient struct {
	AOR     domains.AOR
	UserKey crypto.PrivKey
	Cert    []byte
}

// Delivered is a waiting message, opened.
type Delivered struct {
	ID          []byte
	From        string
	To          string
	CallID      string
	CSeq        uint32
	ContentType string
	Body        []byte
	Time        time.Time // when the storing node took it
	Expires     time.Time
}

// Batch is what Fetch found: the messages, oldest first, and the queue
// versions to acknowledge once the node has taken them (Ack).
type Batch struct {
	Messages []Delivered
	// Unreadable counts messages that did not open (not sealed to this
	// recipient's key: garbage); their queues are acknowledged too.
	Unreadable int
	aor        domains.AOR
	acks       []ackRef
	ids        [][]byte
}

// ackRef is what one slot's ack names: every queue version read there.
type ackRef struct {
	slot    int
	queues  []domains.AckedQueue
	expires time.Time
}

// Option configures a Mailbox.
type Option func(*config) error

type config struct {
	clock       clock.Clock
	retention   time.Duration
	keyLifetime time.Duration
	maxQueues   int
	log         *slog.Logger
}

// WithClock sets the clock (default the wall clock, clock.New()).
func WithClock(clk clock.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return errors.New("mailbox: WithClock: nil clock")
		}
		c.clock = clk
		return nil
	}
}

// WithRetention sets how long a stored message waits (default
// DefaultRetention, at most domains.MaxMailRetention).
func WithRetention(d time.Duration) Option {
	return durationUpTo("WithRetention", d, domains.MaxMailRetention, func(c *config) { c.retention = d })
}

// durationUpTo is the option name that refuses a duration d outside (0, max] and
// else calls set.
func durationUpTo(name string, d, max time.Duration, set func(*config)) Option {
	return func(c *config) error {
		if d <= 0 || d > max {
			return fmt.Errorf("mailbox: %s: %v is not in (0, %v]", name, d, max)
		}
		set(c)
		return nil
	}
}

// WithKeyLifetime sets how long a published mailbox key lives without being
// published again (default DefaultKeyLifetime, at most
// domains.MaxMailboxKeyLifetime).
func WithKeyLifetime(d time.Duration) Option {
	return durationUpTo("WithKeyLifetime", d, domains.MaxMailboxKeyLifetime, func(c *config) { c.keyLifetime = d })
}

// WithMaxQueues bounds the queues this node writes and re-stores (default
// DefaultMaxQueues); a store beyond it gets ErrBusy.
func WithMaxQueues(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("mailbox: WithMaxQueues: %d", n)
		}
		c.maxQueues = n
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("mailbox: WithLogger: nil logger")
		}
		c.log = l
		return nil
	}
}

// Mailbox stores messages for a domain's users in its overlay and reads
// them for the users this node serves. It holds no goroutines: the node
// calls Republish periodically (more often than the overlay forgets values,
// 48 h for kad-dht) and Fetch when a user's device registers.
type Mailbox struct {
	vs     routing.ValueStore
	domain string
	key    crypto.PrivKey
	self   peer.ID
	cfg    config
	mv     domains.MailValidator
	kv     domains.MailboxKeyValidator

	stripes [64]sync.Mutex // serialise stores per recipient

	mu     sync.Mutex
	queues map[string]*queue    // the queues this node wrote, by slot key
	keys   map[string]cachedKey // recipients' mailbox keys, by AOR
	seen   map[string][][]byte  // delivered message IDs, by AOR (bounded)
	closed atomic.Bool
}

type queue struct {
	q      domains.MailQueue
	sealed []byte
	keyRec []byte            // the recipient's sealed mailbox key, re-stored with the queue
	added  map[string]uint64 // message ID → the queue version that added it
}

type cachedKey struct {
	k   *domains.MailboxKey
	raw []byte
	at  time.Time
}

// New returns the mailbox of a node of domain, storing through vs (the
// domain overlay's kad-dht, whose validator has domains.MailValidator under
// domains.NSMail and domains.MailboxKeyValidator under
// domains.NSMailboxKey), signing with the node's key.
func New(vs routing.ValueStore, domain string, nodeKey crypto.PrivKey, opts ...Option) (*Mailbox, error) {
	if vs == nil {
		return nil, errors.New("mailbox: nil value store")
	}
	if err := domains.ValidateDomain(domain); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	self, err := peer.IDFromPrivateKey(nodeKey)
	if err != nil {
		return nil, fmt.Errorf("mailbox: node key: %w", err)
	}
	cfg := config{clock: clock.New(), retention: DefaultRetention, keyLifetime: DefaultKeyLifetime,
		maxQueues: DefaultMaxQueues, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &Mailbox{vs: vs, domain: domain, key: nodeKey, self: self, cfg: cfg,
		mv:     domains.MailValidator{Domain: domain, Now: cfg.clock.Now},
		kv:     domains.MailboxKeyValidator{Domain: domain, Now: cfg.clock.Now},
		queues: map[string]*queue{}, keys: map[string]cachedKey{}, seen: map[string][][]byte{}}, nil
}

// Close ends the mailbox; a second Close returns an error wrapping
// net.ErrClosed. It does not close the value store it was given.
func (m *Mailbox) Close() error {
	if m.closed.Swap(true) {
		return ErrClosed
	}
	return nil
}

func (m *Mailbox) stripe(aor domains.AOR) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(aor.String()))
	return &m.stripes[h.Sum32()%uint32(len(m.stripes))]
}

// owner returns the key that owns r's mailbox: its user key, or this
// node's key.
func (m *Mailbox) owner(r Recipient) crypto.PrivKey {
	if r.UserKey != nil {
		return r.UserKey
	}
	return m.key
}

// Publish publishes r's mailbox key: the HPKE public key derived from its
// owner key, signed by the owner, so that messages can wait for r. A node
// serving r publishes it when a device registers and re-publishes it
// before it lapses. It returns ErrOtherOwner when a live mailbox key of
// another owner holds the AOR (first come, first served).
func (m *Mailbox) Publish(ctx context.Context, r Recipient) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if !r.AOR.InDomain(m.domain) {
		return fmt.Errorf("mailbox: %w: %s", domains.ErrNotInDomain, r.AOR)
	}
	cur, _, err := m.lookupKey(ctx, r.AOR)
	if err != nil && !errors.Is(err, ErrNoMailbox) {
		return err
	}
	return m.publishOver(ctx, r, cur)
}

// Registered is what the node calls when a device of r registers: it reports whether
// messages may wait for r (a live mailbox key of r's owner is published: nothing can be
// stored without one) and publishes r's key unless such a key has more than half its
// lifetime left. One lookup, and a store only when the key is missing or ageing: cheap
// enough for every new registration.
func (m *Mailbox) Registered(ctx context.Context, r Recipient) (mayWait bool, err error) {
	if m.closed.Load() {
		return false, ErrClosed
	}
	if !r.AOR.InDomain(m.domain) {
		return false, fmt.Errorf("mailbox: %w: %s", domains.ErrNotInDomain, r.AOR)
	}
	cur, _, err := m.lookupKey(ctx, r.AOR)
	if err != nil && !errors.Is(err, ErrNoMailbox) {
		return false, err
	}
	now := m.cfg.clock.Now()
	owner := m.owner(r).GetPublic()
	mayWait = cur != nil && cur.Live(now) && cur.Owner.Equals(owner)
	if mayWait && cur.Expires.Sub(now) > m.cfg.keyLifetime/2 {
		return true, nil
	}
	return mayWait, m.publishOver(ctx, r, cur)
}

// publishOver publishes r's mailbox key over cur, the live key found (nil: none).
func (m *Mailbox) publishOver(ctx context.Context, r Recipient, cur *domains.MailboxKey) error {
	owner := m.owner(r)
	priv, err := kemKey(owner)
	if err != nil {
		return err
	}
	now := m.cfg.clock.Now()
	k := &domains.MailboxKey{AOR: r.AOR.String(), Node: m.self, KEM: priv.PublicKey().Bytes(), Seq: domains.SeqAt(now),
		Expires: now.Add(m.cfg.keyLifetime), Cert: r.Cert}
	if cur != nil {
		if cur.Live(now) && !cur.Owner.Equals(owner.GetPublic()) {
			return fmt.Errorf("%w: %s", ErrOtherOwner, r.AOR)
		}
		if cur.Seq >= k.Seq {
			k.Seq = cur.Seq + 1
		}
	}
	if err := k.Sign(owner); err != nil {
		return err
	}
	sealed, err := k.Seal(m.key)
	if err != nil {
		return err
	}
	if err := m.put(ctx, domains.MailboxKeyKey(r.AOR), sealed); err != nil {
		return fmt.Errorf("mailbox: publishing the key of %s: %w", r.AOR, err)
	}
	return nil
}

// put stores a record in the domain overlay. A node alone in its domain has no peer to
// store it at; kad-dht has kept it in the node's own store by then (it stores locally
// before it looks for peers), where this node reads it back, and Republish stores it
// at the peers that come: a lone node's users get their messages too.
func (m *Mailbox) put(ctx context.Context, key string, value []byte) error {
	err := m.vs.PutValue(ctx, key, value)
	if errors.Is(err, kb.ErrLookupFailure) {
		return nil
	}
	return err
}

// lookupKey looks up aor's mailbox key (ErrNoMailbox if none is live).
func (m *Mailbox) lookupKey(ctx context.Context, aor domains.AOR) (*domains.MailboxKey, []byte, error) {
	key := domains.MailboxKeyKey(aor)
	ctx, cancel := context.WithCancel(ctx) // see view
	defer cancel()
	raw, err := m.vs.GetValue(ctx, key, dht.Quorum(domains.DefaultQuorum))
	if errors.Is(err, routing.ErrNotFound) || (err != nil && raw == nil && ctx.Err() == nil) {
		return nil, nil, fmt.Errorf("%w: %s", ErrNoMailbox, aor)
	}
	if err != nil {
		return nil, nil, err
	}
	k, err := m.kv.Open(key, raw)
	if err != nil || !k.Live(m.cfg.clock.Now()) {
		return nil, nil, fmt.Errorf("%w: %s", ErrNoMailbox, aor)
	}
	return k, raw, nil
}

// recipientKey returns aor's mailbox key, from a short-lived cache.
func (m *Mailbox) recipientKey(ctx context.Context, aor domains.AOR) (*domains.MailboxKey, []byte, error) {
	now := m.cfg.clock.Now()
	m.mu.Lock()
	c, ok := m.keys[aor.String()]
	m.mu.Unlock()
	if ok && now.Sub(c.at) < keyCacheTTL && c.k.Live(now) {
		return c.k, c.raw, nil
	}
	k, raw, err := m.lookupKey(ctx, aor)
	if err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	if len(m.keys) >= maxKeyCache {
		clear(m.keys)
	}
	m.keys[aor.String()] = cachedKey{k: k, raw: raw, at: now}
	m.mu.Unlock()
	return k, raw, nil
}

func (m *Mailbox) check(msg Message) (to domains.AOR, err error) {
	if to, err = domains.ParseAOR(msg.To); err != nil {
		return to, fmt.Errorf("%w: To: %w", ErrBadMessage, err)
	}
	if !to.InDomain(m.domain) {
		return to, fmt.Errorf("%w: %w: %s", ErrBadMessage, domains.ErrNotInDomain, to)
	}
	if _, err := domains.ParseAOR(msg.From); err != nil {
		return to, fmt.Errorf("%w: From: %w", ErrBadMessage, err)
	}
	if msg.CallID == "" || len(msg.CallID) > MaxCallID || len(msg.ContentType) > MaxContentType {
		return to, fmt.Errorf("%w: Call-ID or Content-Type", ErrBadMessage)
	}
	if len(msg.Body) > MaxBody {
		return to, fmt.Errorf("%w: %d bytes of body, limit %d", ErrTooLarge, len(msg.Body), MaxBody)
	}
	return to, nil
}

// Store seals msg to its recipient's mailbox key and stores it in the
// recipient's mailbox, in a queue of its sender that this node writes; the
// proxy then answers the sender 202 Accepted. A message already stored
// (same sender, Call-ID and CSeq) is not stored twice. It returns
// ErrNoMailbox when the recipient has no live mailbox key, ErrSenderFull
// when the sender's domains.MaxSenderQueues queues for the recipient are
// full, ErrMailboxFull when
// every slot holds another sender's live queue.
func (m *Mailbox) Store(ctx context.Context, msg Message) (Receipt, error) {
	if m.closed.Load() {
		return Receipt{}, ErrClosed
	}
	to, err := m.check(msg)
	if err != nil {
		return Receipt{}, err
	}
	mk, mkRaw, err := m.recipientKey(ctx, to)
	if err != nil {
		return Receipt{}, err
	}
	if msg.Owner != nil && !mk.Owner.Equals(msg.Owner) {
		return Receipt{}, fmt.Errorf("%w: %s", ErrOwnerMismatch, to)
	}
	id := MessageID(msg.From, msg.CallID, msg.CSeq)
	tag := domains.SenderTag(to, msg.From)
	mu := m.stripe(to)
	mu.Lock()
	defer mu.Unlock()
	queues := 0 // the sender's queues met so far
	for probe := range domains.MailSlots {
		slot := domains.SlotOf(to, tag, probe)
		key := domains.MailSlotKey(to, slot)
		base, st, err := m.base(ctx, to, key, slot, tag, probe, mk.Owner)
		if err != nil {
			return Receipt{}, err
		}
		switch st {
		case slotTaken:
			continue
		case slotSender:
			if queues++; queues >= domains.MaxSenderQueues {
				return Receipt{}, fmt.Errorf("%w: %s", ErrSenderFull, to)
			}
			continue
		}
		for _, sm := range base.q.Messages {
			if bytes.Equal(sm.ID, id) {
				return Receipt{ID: id, Slot: slot, Expires: sm.Expires}, nil
			}
		}
		if len(base.q.Messages) >= domains.MaxMailPerQueue {
			if queues++; queues >= domains.MaxSenderQueues {
				return Receipt{}, fmt.Errorf("%w: %s", ErrSenderFull, to)
			}
			continue
		}
		m.mu.Lock()
		_, had := m.queues[key]
		busy := !had && len(m.queues) >= m.cfg.maxQueues
		m.mu.Unlock()
		if busy {
			return Receipt{}, fmt.Errorf("%w: %d queues", ErrBusy, m.cfg.maxQueues)
		}
		now := m.cfg.clock.Now()
		box, err := seal(mk.KEM, to, id, msg, now)
		if err != nil {
			return Receipt{}, err
		}
		if len(box) > domains.MaxSealedMessage {
			return Receipt{}, fmt.Errorf("%w: %d bytes sealed, limit %d", ErrTooLarge, len(box), domains.MaxSealedMessage)
		}
		next := base.q
		next.Messages = append(slices.Clone(next.Messages), domains.SealedMessage{ID: id, Time: now, Expires: now.Add(m.cfg.retention), Box: box})
		next.Seq = max(domains.SeqAt(now), base.q.Seq+1)
		next.Expires = time.Time{}
		for _, sm := range next.Messages {
			next.Expires = maxTime(next.Expires, sm.Expires)
		}
		sealed, err := next.Seal(m.key)
		if err != nil {
			return Receipt{}, err
		}
		if err := m.put(ctx, key, sealed); err != nil {
			if ctx.Err() != nil {
				return Receipt{}, fmt.Errorf("mailbox: storing a message for %s: %w", to, err)
			}
			continue // this node stores another writer's queue there now: the next slot
		}
		// Two writers may have taken a free slot at once, each storer
		// keeping the queue it got first: then the message goes to the
		// next slot too (Fetch reads both, and delivers an ID once).
		if st == slotFree {
			if recs, err := m.view(ctx, key); err != nil {
				return Receipt{}, err
			} else if othersIn(recs, m.self, tag, probe, mk.Owner, now) != slotUsable {
				continue
			}
		}
		added := maps.Clone(base.added)
		added[string(id)] = next.Seq
		m.mu.Lock()
		m.queues[key] = &queue{q: next, sealed: sealed, keyRec: mkRaw, added: added}
		m.mu.Unlock()
		return Receipt{ID: id, Slot: slot, Expires: now.Add(m.cfg.retention)}, nil
	}
	return Receipt{}, fmt.Errorf("%w: %s", ErrMailboxFull, to)
}

// What a slot holds for a store (Mailbox.base).
type slotState int

const (
	slotUsable slotState = iota // this node's queue of the sender is there
	slotFree                    // no live queue is there
	slotSender                  // a queue of the same sender by another writer (or probe)
	slotTaken                   // another sender's live queue
)

// base returns the queue this node continues in slot key for (tag,
// probe): its own queue as the overlay or this node holds it, without what
// the recipient acknowledged and what lapsed; or the slot's state when it
// holds another live queue.
func (m *Mailbox) base(ctx context.Context, to domains.AOR, key string, slot int, tag string, probe int, recipient crypto.PubKey) (*queue, slotState, error) {
	now := m.cfg.clock.Now()
	m.mu.Lock()
	local := m.queues[key]
	m.mu.Unlock()
	if local != nil && (local.q.Sender != tag || local.q.Probe != probe || !local.q.Recipient.Equals(recipient)) {
		if now.Before(local.q.Expires) {
			if local.q.Sender == tag {
				return nil, slotSender, nil
			}
			return nil, slotTaken, nil // this node's queue of another sender
		}
		local = nil
	}
	fresh := &queue{q: domains.MailQueue{AOR: to.String(), Slot: slot, Sender: tag, Probe: probe, Writer: m.self, Recipient: recipient},
		added: map[string]uint64{}}
	if local != nil {
		fresh = local
	}
	recs, err := m.view(ctx, key)
	if err != nil {
		return nil, slotTaken, err
	}
	if st := othersIn(recs, m.self, tag, probe, recipient, now); st != slotUsable {
		return nil, st, nil
	}
	q, st := fresh, slotFree
	var acked uint64
	for _, rec := range recs {
		switch r := rec.(type) {
		case *domains.MailQueue:
			if r.Writer != m.self || r.Sender != tag || r.Probe != probe || !r.Recipient.Equals(recipient) {
				continue
			}
			if now.Before(r.Expires) {
				st = slotUsable
			}
			if r.Seq > q.q.Seq {
				// This node restarted, or wrote it before: continue what
				// the overlay holds.
				q = &queue{q: *r, added: map[string]uint64{}}
				for _, sm := range r.Messages {
					q.added[string(sm.ID)] = r.Seq
				}
			}
		case *domains.MailAck:
			if r.Recipient.Equals(recipient) {
				for _, a := range r.Acked {
					if a.Writer == m.self && a.Seq > acked {
						acked = a.Seq
					}
				}
			}
		}
	}
	q = prune(q, acked, now)
	if q.q.Seq < acked {
		q.q.Seq = acked // the next version must be above the ack
	}
	return q, st, nil
}

// othersIn tells whether records of a slot hold a live queue that is not
// this node's queue of (tag, probe): another sender's (slotTaken) or the
// same sender's by another writer or probe (slotSender).
func othersIn(recs []domains.MailRecord, self peer.ID, tag string, probe int, recipient crypto.PubKey, now time.Time) slotState {
	st := slotUsable
	for _, rec := range recs {
		r, ok := rec.(*domains.MailQueue)
		if !ok || !now.Before(r.Expires) {
			continue
		}
		if r.Writer == self && r.Sender == tag && r.Probe == probe && r.Recipient.Equals(recipient) {
			continue
		}
		if r.Sender != tag {
			return slotTaken
		}
		st = slotSender
	}
	return st
}

// view returns every valid record of a slot that a lookup meets: storers
// may hold different queues when two writers took a free slot at once
// (each storer keeps the first it got).
func (m *Mailbox) view(ctx context.Context, key string) ([]domains.MailRecord, error) {
	// kad-dht's lookup goroutines block sending values past the quorum
	// until the context ends: end it when done, or they leak.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := m.vs.SearchValue(ctx, key, dht.Quorum(domains.DefaultQuorum))
	if err != nil {
		if errors.Is(err, routing.ErrNotFound) || ctx.Err() == nil {
			return nil, nil
		}
		return nil, err
	}
	var out []domains.MailRecord
	for raw := range ch {
		if rec, err := m.mv.Open(key, raw); err == nil {
			out = append(out, rec)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// prune returns q without the messages added at versions up to acked and
// without lapsed ones.
func prune(q *queue, acked uint64, now time.Time) *queue {
	out := &queue{q: q.q, keyRec: q.keyRec, added: map[string]uint64{}}
	out.q.Messages = nil
	for _, sm := range q.q.Messages {
		v, known := q.added[string(sm.ID)]
		if (known && v <= acked) || !now.Before(sm.Expires) {
			continue
		}
		out.q.Messages = append(out.q.Messages, sm)
		out.added[string(sm.ID)] = v
	}
	return out
}

// Fetch reads r's waiting messages from every slot of its mailbox: those
// sealed to r's key that this node has not delivered yet, oldest first. It
// changes nothing: call Ack once the node has taken them.
func (m *Mailbox) Fetch(ctx context.Context, r Recipient) (*Batch, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	owner := m.owner(r)
	priv, err := kemKey(owner)
	if err != nil {
		return nil, err
	}
	pub := owner.GetPublic()
	b := &Batch{aor: r.AOR}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, fetchParallel)
	)
	now := m.cfg.clock.Now()
	for slot := range domains.MailSlots {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			key := domains.MailSlotKey(r.AOR, slot)
			recs, err := m.view(ctx, key)
			if err != nil {
				return
			}
			var (
				got     []Delivered
				bad     int
				ids     [][]byte
				acks    = map[peer.ID]uint64{}
				expires time.Time
			)
			for _, rec := range recs {
				q, ok := rec.(*domains.MailQueue)
				if !ok || !q.Recipient.Equals(pub) {
					continue
				}
				for _, sm := range q.Messages {
					if !now.Before(sm.Expires) {
						continue
					}
					ids = append(ids, sm.ID)
					if m.wasDelivered(r.AOR, sm.ID) {
						continue
					}
					l, err := open(priv, r.AOR, sm.ID, sm.Box)
					if err != nil || l.To != r.AOR.String() {
						bad++
						continue
					}
					got = append(got, Delivered{ID: sm.ID, From: l.From, To: l.To, CallID: l.CallID, CSeq: l.CSeq,
						ContentType: l.ContentType, Body: l.Body, Time: sm.Time, Expires: sm.Expires})
				}
				if seq, ok := acks[q.Writer]; !ok || q.Seq > seq {
					acks[q.Writer] = q.Seq
				}
				expires = maxTime(expires, q.Expires)
			}
			mu.Lock()
			defer mu.Unlock()
			b.Messages = append(b.Messages, got...)
			b.Unreadable += bad
			b.ids = append(b.ids, ids...)
			if len(acks) > 0 {
				ref := ackRef{slot: slot, expires: expires}
				for w, seq := range acks {
					ref.queues = append(ref.queues, domains.AckedQueue{Writer: w, Seq: seq})
				}
				slices.SortFunc(ref.queues, func(x, y domains.AckedQueue) int { return strings.Compare(string(x.Writer), string(y.Writer)) })
				if len(ref.queues) > domains.MaxAckedQueues {
					ref.queues = ref.queues[:domains.MaxAckedQueues]
				}
				b.acks = append(b.acks, ref)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The same message may wait in two queues (a retransmission through
	// another node): deliver it once.
	slices.SortFunc(b.Messages, func(x, y Delivered) int {
		if c := x.Time.Compare(y.Time); c != 0 {
			return c
		}
		return bytes.Compare(x.ID, y.ID)
	})
	seen := make(map[string]bool, len(b.Messages))
	b.Messages = slices.DeleteFunc(b.Messages, func(d Delivered) bool {
		dup := seen[string(d.ID)]
		seen[string(d.ID)] = true
		return dup
	})
	return b, nil
}

// Ack acknowledges what b fetched: every queue version it read is replaced
// by an ack signed with r's owner key, so storers drop those messages;
// messages stored after the fetch stay. The node must have taken the
// messages first (delivered them, or queued them for delivery).
func (m *Mailbox) Ack(ctx context.Context, r Recipient, b *Batch) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if b == nil || b.aor != r.AOR {
		return fmt.Errorf("%w: a batch of another recipient", ErrBadMessage)
	}
	owner := m.owner(r)
	m.remember(r.AOR, b.ids)
	var errs []error
	for _, a := range b.acks {
		ack := &domains.MailAck{AOR: r.AOR.String(), Slot: a.slot, Acked: a.queues, Expires: a.expires, Signer: m.self}
		if err := ack.Sign(owner); err != nil {
			return err
		}
		sealed, err := ack.Seal(m.key)
		if err != nil {
			return err
		}
		if err := m.put(ctx, domains.MailSlotKey(r.AOR, a.slot), sealed); err != nil {
			errs = append(errs, fmt.Errorf("mailbox: acknowledging slot %d of %s: %w", a.slot, r.AOR, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Mailbox) wasDelivered(aor domains.AOR, id []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.ContainsFunc(m.seen[aor.String()], func(s []byte) bool { return bytes.Equal(s, id) })
}

// remember keeps delivered IDs, so that a queue read again before its ack
// reached every storer is not delivered twice. Bounded per AOR and in AORs.
func (m *Mailbox) remember(aor domains.AOR, ids [][]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := aor.String()
	if _, ok := m.seen[k]; !ok && len(m.seen) >= maxSeenAORs {
		clear(m.seen)
	}
	s := m.seen[k]
	for _, id := range ids {
		if !slices.ContainsFunc(s, func(x []byte) bool { return bytes.Equal(x, id) }) {
			s = append(s, id)
		}
	}
	if len(s) > maxSeenPerAOR {
		s = s[len(s)-maxSeenPerAOR:]
	}
	m.seen[k] = s
}

// Republish re-stores every queue this node wrote that still waits, with
// its recipient's mailbox key (kad-dht forgets values 48 h after they were
// stored), and forgets queues that were acknowledged or lapsed. It returns
// how many queues it re-stored.
func (m *Mailbox) Republish(ctx context.Context) (int, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	m.mu.Lock()
	keys := make([]string, 0, len(m.queues))
	for k := range m.queues {
		keys = append(keys, k)
	}
	m.mu.Unlock()
	n := 0
	var errs []error
	for _, key := range keys {
		m.mu.Lock()
		q := m.queues[key]
		m.mu.Unlock()
		if q == nil {
			continue
		}
		now := m.cfg.clock.Now()
		next := prune(q, 0, now)
		recs, _ := m.view(ctx, key)
		for _, rec := range recs {
			if a, ok := rec.(*domains.MailAck); ok && a.Recipient.Equals(q.q.Recipient) {
				for _, aq := range a.Acked {
					if aq.Writer == m.self {
						next = prune(next, aq.Seq, now)
					}
				}
			}
		}
		if len(next.q.Messages) == 0 {
			m.mu.Lock()
			if m.queues[key] == q {
				delete(m.queues, key)
			}
			m.mu.Unlock()
			continue
		}
		if len(next.q.Messages) < len(q.q.Messages) { // some were acknowledged or lapsed: a new version
			next.q.Seq = max(domains.SeqAt(now), q.q.Seq+1)
			next.q.Expires = time.Time{}
			for _, sm := range next.q.Messages {
				next.q.Expires = maxTime(next.q.Expires, sm.Expires)
			}
			sealed, err := next.q.Seal(m.key)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			next.sealed = sealed
			m.mu.Lock()
			if m.queues[key] == q {
				m.queues[key] = next
			}
			m.mu.Unlock()
			q = next
		}
		if q.keyRec != nil {
			_ = m.vs.PutValue(ctx, domains.MailboxKeyKey(mustAOR(q.q.AOR)), q.keyRec)
		}
		if err := m.put(ctx, key, q.sealed); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// Queues returns how many queues this node holds for re-storing.
func (m *Mailbox) Queues() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queues)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func mustAOR(s string) domains.AOR {
	a, _ := domains.ParseAOR(s)
	return a
}
