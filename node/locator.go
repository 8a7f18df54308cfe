package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
)

// ErrTaken: the AOR's live binding belongs to another owner (open domain:
// another user key, or another node for a user without key). It matches
// sipbridge.ErrForbidden, so the bridge answers 403.
var ErrTaken = errors.New("node: name registered by another owner")

// locator is the node's location service (draft §4.2, §4.3), the
// sipbridge.Locator of its SIP bridge: it stores the bindings of the AORs
// its users register in the domain overlay, sealed with the node's key (and
// signed with the user's key when the users file holds one), re-stores them
// until their contacts expire, and looks AORs up.
type locator struct {
	ctx     context.Context // the node's life
	domain  string
	known   []string // the node's domain and the configured known domains
	self    peer.ID
	key     crypto.PrivKey
	ov      *domains.Overlay
	clock   clock.Clock
	addrs   func() []ma.Multiaddr // the addresses put into records
	enroll  *enrollment           // nil: an open domain
	users   *Users                // nil: no user keys
	lookups *lookups
	metrics *Metrics
	log     *slog.Logger

	mu   sync.Mutex
	regs map[domains.AOR]*registration
	devs map[domains.AOR][]domains.Contact // the devices this node lists in device sets, to re-store
	// devPub is what the node last stored of its devices per AOR (publishDevices).
	devPub map[domains.AOR]devicesPublished
	// devJobs are the device-set publishes waiting or running, by AOR; wg is the
	// node's WaitGroup, which owns their goroutines.
	devJobs map[domains.AOR]*devicesJob
	wg      *sync.WaitGroup
	seq     uint64
	// stored is told each device set this node stored (NotifyDeviceSets).
	stored func(aor domains.AOR, set *domains.DeviceSet)
}

var _ sipbridge.DeviceSetNotifier = (*locator)(nil)

// NotifyDeviceSets makes the locator call f with each device set it stored, as read
// back (the bridge keeps its devices' presence at the user's presence home with it).
func (l *locator) NotifyDeviceSets(f func(aor domains.AOR, set *domains.DeviceSet)) {
	l.mu.Lock()
	l.stored = f
	l.mu.Unlock()
}

// devicesPublished is what a node last stored of its devices of an AOR: their tags and
// registration times, and until when the entry lives.
type devicesPublished struct {
	sum   string
	until time.Time
}

// registration is what the locator keeps of an AOR it serves, to re-store
// it: the binding with its contacts, and the sealed record published
// (contacts redacted), which a periodic re-store repeats unchanged.
type registration struct {
	binding domains.Binding
	sealed  []byte
}

func (l *locator) closed() bool { return l.ctx.Err() != nil }

// Domain returns the node's domain.
func (l *locator) Domain() string { return l.domain }

// parseAOR parses s and checks that it belongs to the node's domain.
func (l *locator) parseAOR(s string) (domains.AOR, error) {
	a, err := domains.ParseAOR(s)
	if err != nil {
		return a, err
	}
	return a, l.checkAOR(a)
}

func (l *locator) checkAOR(a domains.AOR) error {
	if d, _ := domains.DomainOf(a.Host, l.known); d != l.domain {
		return fmt.Errorf("%w: %s belongs to %s, this node to %s", ErrNotInDomain, a, d, l.domain)
	}
	return nil
}

// nextSeqLocked returns a sequence number above every earlier one and above
// floor, also across restarts: it follows the clock in microseconds
// (domains.SeqAt), which validators bound to MaxClockSkew ahead of theirs.
func (l *locator) nextSeqLocked(floor uint64) uint64 {
	s := max(domains.SeqAt(l.clock.Now()), l.seq+1, floor)
	l.seq = s
	return s
}

func (l *locator) nextSeq(floor uint64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nextSeqLocked(floor)
}

// owner returns the owner a binding of aor by this node would have.
func (l *locator) owner(aor domains.AOR) string {
	b := domains.Binding{Peer: l.self}
	if k := l.users.key(aor.User); k != nil {
		b.Owner = k.GetPublic()
	}
	return l.ownerOf(&b)
}

// ownerOf is the owner of b as this node's validator sees it: in an enrolled
// domain every certified binding has the same owner.
func (l *locator) ownerOf(b *domains.Binding) string {
	if l.enroll != nil {
		return "certified"
	}
	return b.OwnerID()
}

// Register stores or refreshes the binding of aor to this node with the
// given UA contacts (see Node.Register).
func (l *locator) Register(ctx context.Context, aor domains.AOR, contacts []domains.Contact) error {
	if len(contacts) == 0 {
		return l.Unregister(ctx, aor)
	}
	if l.closed() {
		return ErrClosed
	}
	if err := l.checkAOR(aor); err != nil {
		return err
	}
	if len(contacts) > domains.MaxContacts {
		return fmt.Errorf("node: %d contacts for %s, limit %d", len(contacts), aor, domains.MaxContacts)
	}
	now := l.clock.Now()
	var expires time.Time
	for _, c := range contacts {
		if c.Expires.After(expires) {
			expires = c.Expires
		}
	}
	if !expires.After(now) {
		return l.Unregister(ctx, aor)
	}
	cert, err := l.enroll.certFor(aor)
	if err != nil {
		l.forget(aor)
		return err
	}
	l.mu.Lock()
	prev, had := l.regs[aor]
	live := had && !prev.binding.Removed && prev.binding.Live(now)
	l.mu.Unlock()
	var floor uint64
	switch {
	case !live:
		if floor, err = l.claim(ctx, aor, now); err != nil {
			l.forget(aor)
			if errors.Is(err, ErrTaken) {
				return err
			}
			// The device set lists this node's devices (stored in the background,
			// re-stored until it is): calls find them.
			l.log.Debug("binding not stored", "aor", aor, "err", err)
			l.publishDevicesLater(aor, contacts, cert, false)
			return nil
		}
	case !addsContact(prev.binding.Contacts, contacts) && !l.stillOurs(ctx, aor, prev.binding):
		l.forget(aor) // the user registered at another node since: both serve devices
		l.publishDevicesLater(aor, contacts, cert, false)
		return nil
	}
	// The binding's owner check above decided that this node may serve the AOR; its
	// entry in the AOR's device set (issue 19: every serving node's devices) is stored
	// in the background, so that a REGISTER waits for no more overlay round trips than
	// before.
	l.publishDevicesLater(aor, contacts, cert, false)
	created := now
	if live {
		created = prev.binding.Created
	}
	b := domains.Binding{
		AOR: aor.String(), Peer: l.self, Addrs: l.addrs(),
		Contacts: slices.Clone(contacts),
		Created:  created, Expires: expires, Seq: l.nextSeq(floor), Cert: cert,
	}
	start := time.Now()
	err = l.publish(ctx, aor, b)
	l.metrics.observeRegistration("register", time.Since(start), err)
	if err != nil && !errors.Is(err, ErrTaken) && !errors.Is(err, sipbridge.ErrForbidden) {
		// Another node of the user stored a newer binding meanwhile; the
		// device set, stored above, lists this node's devices.
		l.log.Debug("binding not stored, the device set was", "aor", aor, "err", err)
		return nil
	}
	return err
}

// publishDevices stores this node's entry of aor's device set with the
// devices of contacts (none: the entry is removed), and keeps them for
// re-stores. Another owner's live set is ErrTaken.
func (l *locator) publishDevices(ctx context.Context, aor domains.AOR, contacts []domains.Contact, cert []byte, force bool) error {
	now := l.clock.Now()
	var refs []domains.DeviceRef
	for _, c := range contacts {
		if !c.Expires.After(now) {
			continue
		}
		id := c.Instance
		if id == "" {
			id = c.URI // a device without an instance ID: its contact, hashed
		}
		since := c.Since
		if since.IsZero() || since.After(now) {
			since = now
		}
		refs = append(refs, domains.DeviceRef{Tag: domains.InstanceTag(aor, id), Since: since, Expires: c.Expires})
	}
	if len(refs) > domains.MaxDevicesPerNode {
		refs = refs[len(refs)-domains.MaxDevicesPerNode:]
	}
	// A refresh that changes no device and leaves the stored entry more than half its
	// time is not stored again (a REGISTER refresh costs no overlay round trips); the
	// periodic re-store (force) always stores.
	var sum strings.Builder
	var until time.Time
	for _, r := range refs {
		sum.WriteString(r.Tag + "@" + r.Since.UTC().Format(time.RFC3339Nano) + ";")
		if r.Expires.After(until) {
			until = r.Expires
		}
	}
	l.mu.Lock()
	prev, had := l.devPub[aor]
	if !force && had && len(refs) > 0 && prev.sum == sum.String() && prev.until.Sub(now) > until.Sub(now)/2 {
		l.devs[aor] = slices.Clone(contacts)
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	set, err := l.ov.PublishDevices(ctx, domains.DevicePublish{AOR: aor, NodeKey: l.key, UserKey: l.users.key(aor.User),
		Cert: cert, Addrs: l.addrs(), Devices: refs})
	if err != nil && !errors.Is(err, domains.ErrOtherOwner) && !l.ov.Joined() {
		// A lone node: the entry is stored when the overlay has peers
		// (republish, also at the join); its own devices are found locally.
		l.log.Debug("device set not stored: overlay has no peers yet", "aor", aor, "err", err)
		err = nil
	}
	l.mu.Lock()
	switch {
	case len(refs) == 0 || errors.Is(err, domains.ErrOtherOwner):
		delete(l.devs, aor)
		delete(l.devPub, aor)
	case err == nil:
		l.devs[aor] = slices.Clone(contacts)
		l.devPub[aor] = devicesPublished{sum: sum.String(), until: until}
	default:
		l.devs[aor] = slices.Clone(contacts) // re-stored by republish
		delete(l.devPub, aor)
	}
	stored := l.stored
	l.mu.Unlock()
	if err == nil && set != nil && stored != nil {
		stored(aor, set)
	}
	if errors.Is(err, domains.ErrOtherOwner) {
		reason := aor.String() + " is served by devices of another owner"
		return fmt.Errorf("%w: %w", ErrTaken, &sipbridge.ForbiddenError{Reason: reason})
	}
	return err
}

// devicesJob is a device-set publish waiting or running for an AOR
// (publishDevicesLater).
type devicesJob struct {
	contacts []domains.Contact
	cert     []byte
	force    bool
	queued   bool // a newer state waits for the running publish
}

// publishDevicesLater stores this node's devices of aor in the background: one
// publish per AOR at a time, a change meanwhile published after it (the latest
// state only). The goroutines belong to the node's WaitGroup and end with its
// context.
func (l *locator) publishDevicesLater(aor domains.AOR, contacts []domains.Contact, cert []byte, force bool) {
	l.mu.Lock()
	if j, ok := l.devJobs[aor]; ok {
		j.contacts, j.cert, j.force, j.queued = slices.Clone(contacts), cert, j.force || force, true
		l.mu.Unlock()
		return
	}
	j := &devicesJob{contacts: slices.Clone(contacts), cert: cert, force: force}
	l.devJobs[aor] = j
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			l.mu.Lock()
			cs, cert, force := j.contacts, j.cert, j.force
			j.queued, j.force = false, false
			l.mu.Unlock()
			ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
			err := l.publishDevices(ctx, aor, cs, cert, force)
			cancel()
			if err != nil && l.ctx.Err() == nil {
				l.log.Warn("storing the node's devices failed", "aor", aor, "err", err)
			}
			l.mu.Lock()
			if !j.queued || l.ctx.Err() != nil {
				delete(l.devJobs, aor)
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
		}
	}()
}

// LookupDevices returns aor's device set: every node of the domain that
// serves a device of the user (sipbridge.DeviceLocator).
func (l *locator) LookupDevices(ctx context.Context, aor domains.AOR) (*domains.DeviceSet, error) {
	if l.closed() {
		return nil, ErrClosed
	}
	if err := l.checkAOR(aor); err != nil {
		return nil, err
	}
	return lookup(l.lookups, ctx, overlayDomain, "devices", aor.String(),
		func(ctx context.Context) (*domains.DeviceSet, error) { return l.ov.LookupDevices(ctx, aor) },
		func(s *domains.DeviceSet, _ error) []peer.ID {
			if s == nil {
				return nil
			}
			var ps []peer.ID
			for _, e := range s.Entries {
				ps = append(ps, e.Peer)
			}
			return ps
		})
}

// claim looks aor up before this node first registers it, and returns the
// sequence number floor to continue its owner's binding, or ErrTaken.
func (l *locator) claim(ctx context.Context, aor domains.AOR, now time.Time) (uint64, error) {
	cur, err := l.ov.LookupBinding(ctx, aor)
	if errors.Is(err, domains.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("node: looking %s up before registering it: %w", aor, err)
	}
	if !cur.Live(now) || l.ownerOf(cur) == l.owner(aor) {
		return cur.Seq + 1, nil
	}
	if cur.Peer == l.self && cur.Owner == nil {
		// This node's own keyless binding (the users file has gained a key
		// for the user): withdraw it, then claim the name as its owner.
		tomb := domains.Binding{AOR: aor.String(), Peer: l.self, Addrs: l.addrs(),
			Created: cur.Created, Expires: cur.Expires, Removed: true, Cert: cur.Cert, Seq: l.nextSeq(cur.Seq + 1)}
		if err := l.ov.PutBinding(ctx, l.key, &tomb); err != nil {
			return 0, err
		}
		return 0, nil
	}
	reason := fmt.Sprintf("%s is registered by another owner until %s", aor, cur.Expires.UTC().Format(time.RFC3339))
	return 0, fmt.Errorf("%w: %w", ErrTaken, &sipbridge.ForbiddenError{Reason: reason})
}

// stillOurs reports whether the AOR's binding in the overlay is still this
// node's (or absent): the user has not registered at another node since.
func (l *locator) stillOurs(ctx context.Context, aor domains.AOR, ours domains.Binding) bool {
	cur, err := l.ov.LookupBinding(ctx, aor)
	if err != nil {
		return true // not found, or no answer: keep serving
	}
	return cur.Peer == l.self || cur.Seq <= ours.Seq || l.ownerOf(cur) != l.ownerOf(&ours)
}

// addsContact reports whether next registers a contact prev does not hold,
// or extends one: a change the user made at this node, rather than contacts
// lapsing.
func addsContact(prev, next []domains.Contact) bool {
	for _, c := range next {
		if !slices.ContainsFunc(prev, func(p domains.Contact) bool { return p.URI == c.URI && !c.Expires.After(p.Expires) }) {
			return true
		}
	}
	return false
}

// publish seals b as published (contacts redacted, owner-signed with the
// user's key if there is one), stores it and keeps it for re-stores.
func (l *locator) publish(ctx context.Context, aor domains.AOR, b domains.Binding) error {
	pub := b.Redacted()
	if k := l.users.key(aor.User); k != nil {
		if err := pub.SignOwner(k); err != nil {
			return err
		}
	}
	sealed, err := pub.Seal(l.key)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.regs[aor] = &registration{binding: b, sealed: sealed}
	l.mu.Unlock()
	return l.ov.PutSealedBinding(ctx, aor, sealed)
}

// forget stops re-storing aor (the node may no longer register it).
func (l *locator) forget(aor domains.AOR) {
	l.mu.Lock()
	delete(l.regs, aor)
	l.mu.Unlock()
}

// Unregister stores a tombstone for aor that wins over the node's earlier
// bindings (see Node.Unregister).
func (l *locator) Unregister(ctx context.Context, aor domains.AOR) error {
	if l.closed() {
		return ErrClosed
	}
	if err := l.checkAOR(aor); err != nil {
		return err
	}
	cert, err := l.enroll.certFor(aor)
	if err != nil {
		l.forget(aor)
		return err
	}
	l.publishDevicesLater(aor, nil, cert, true)
	now := l.clock.Now()
	l.mu.Lock()
	prev, had := l.regs[aor]
	l.mu.Unlock()
	var floor uint64
	cur, lerr := l.ov.LookupBinding(ctx, aor)
	switch {
	case lerr != nil:
	case cur.Peer != l.self && cur.Live(now):
		// Served by another node now (or another owner's): not ours to remove.
		l.forget(aor)
		return nil
	default:
		floor = cur.Seq + 1
	}
	expires := now.Add(time.Minute)
	created := now
	if had {
		if prev.binding.Expires.After(expires) {
			expires = prev.binding.Expires
		}
		created = prev.binding.Created
	}
	b := domains.Binding{
		AOR: aor.String(), Peer: l.self, Addrs: l.addrs(),
		Created: created, Expires: expires, Seq: l.nextSeq(floor), Removed: true, Cert: cert,
	}
	start := time.Now()
	err = l.publish(ctx, aor, b)
	l.metrics.observeRegistration("unregister", time.Since(start), err)
	return err
}

// registrations returns the live bindings this node serves.
func (l *locator) registrations() []domains.Binding {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []domains.Binding
	for _, r := range l.regs {
		if r.binding.Live(now) {
			out = append(out, r.binding)
		}
	}
	return out
}

// Lookup resolves aor in the domain overlay (see Node.Lookup).
func (l *locator) Lookup(ctx context.Context, aor domains.AOR) (*domains.Binding, error) {
	if l.closed() {
		return nil, ErrClosed
	}
	if err := l.checkAOR(aor); err != nil {
		return nil, err
	}
	return lookup(l.lookups, ctx, overlayDomain, "binding", aor.String(),
		func(ctx context.Context) (*domains.Binding, error) { return l.ov.GetBinding(ctx, aor) },
		func(b *domains.Binding, _ error) []peer.ID {
			if b == nil {
				return nil
			}
			return []peer.ID{b.Peer}
		})
}

// republish re-stores the bindings this node serves: an unchanged record as
// it was sealed, a changed one (contacts lapsed, addresses changed) anew,
// unless the user has registered at another node since.
func (l *locator) republish() {
	now := l.clock.Now()
	type job struct {
		aor    domains.AOR
		b      domains.Binding
		sealed []byte // unchanged record to re-store; nil: store b anew
	}
	var todo []job
	addrs := l.addrs()
	l.mu.Lock()
	for aor, r := range l.regs {
		if !now.Before(r.binding.Expires) {
			delete(l.regs, aor)
			continue
		}
		b := r.binding
		b.Contacts = nil
		for _, c := range r.binding.Contacts {
			if c.Expires.After(now) {
				b.Contacts = append(b.Contacts, c)
			}
		}
		if len(b.Contacts) == len(r.binding.Contacts) && slices.EqualFunc(b.Addrs, addrs, ma.Multiaddr.Equal) && r.sealed != nil {
			// Nothing changed: re-store the same record. It cannot displace a
			// newer binding of the user made at another node.
			todo = append(todo, job{aor: aor, sealed: r.sealed})
			continue
		}
		b.Addrs = addrs
		todo = append(todo, job{aor: aor, b: b})
	}
	l.mu.Unlock()
	type devJob struct {
		aor      domains.AOR
		contacts []domains.Contact
	}
	var devJobs []devJob
	l.mu.Lock()
	for aor, cs := range l.devs {
		var live []domains.Contact
		for _, c := range cs {
			if c.Expires.After(now) {
				live = append(live, c)
			}
		}
		devJobs = append(devJobs, devJob{aor, live})
	}
	l.mu.Unlock()
	for _, j := range devJobs {
		ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
		cert, err := l.enroll.certFor(j.aor)
		if err == nil {
			err = l.publishDevices(ctx, j.aor, j.contacts, cert, true)
		}
		if err != nil && l.ctx.Err() == nil {
			l.log.Warn("re-store device set failed", "aor", j.aor, "err", err)
		}
		cancel()
	}
	for _, j := range todo {
		ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
		var err error
		switch {
		case j.sealed != nil:
			err = l.ov.PutSealedBinding(ctx, j.aor, j.sealed)
		case !l.stillOurs(ctx, j.aor, j.b):
			l.forget(j.aor)
		default:
			j.b.Seq = l.nextSeq(0)
			err = l.publish(ctx, j.aor, j.b)
		}
		if err != nil && l.ctx.Err() == nil {
			l.log.Warn("re-store binding failed", "aor", j.aor, "err", err)
		}
		cancel()
	}
}
