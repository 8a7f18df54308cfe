package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hiersip/hiersip/bootstrap"
	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Errors of the node.
var (
	ErrClosed      = fmt.Errorf("node: closed: %w", net.ErrClosed)
	ErrNotInDomain = domains.ErrNotInDomain
	ErrNotFound    = domains.ErrNotFound
	ErrNoKey       = errors.New("node: the host's peerstore has no private key for its peer ID")
)

// Node is a hiersip node: a libp2p host that is a member of one domain
// overlay, registers its users' AORs there and looks AORs up.
type Node struct {
	cfg     Config
	h       host.Host
	ownHost bool
	lock    *dirLock // of DataDir, released by Close
	key     crypto.PrivKey
	log     *slog.Logger // with "node" (its peer ID) and "domain"
	nodeLog *slog.Logger // with "node" only, for the election runner

	domain   *domains.Overlay
	boot     *bootstrap.Bootstrapper
	enroll   *enrollment                               // nil: open domain
	userKeys atomic.Pointer[map[string]crypto.PrivKey] // users' keys from the users file, by user (userkeys.go)

	mu     sync.Mutex
	regs   map[domains.AOR]*registration
	seq    uint64
	global *globalMember
	proxy  *proxyRole

	proxies proxyCache

	election *election.Runner
	bridge   *sipbridge.Bridge
	users    *sipbridge.Users // nil: no users file
	media    *media.Relay     // media.go

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	joined    chan struct{}
	ready     readiness
}

// registration is what the node keeps of an AOR it serves, to re-store it:
// the binding with its contacts, and the sealed record published (contacts
// redacted), which a periodic re-store repeats unchanged.
type registration struct {
	binding domains.Binding
	sealed  []byte
}

// New creates a libp2p host (TCP and QUIC; the identity key is kept in
// cfg.DataDir, created on first start) and joins it to cfg.Domain. Close
// closes the host too. A data directory belongs to one node at a time: New
// locks it (LockFile) until Close, and fails with an error wrapping
// ErrDataDirLocked, naming the holder's process ID, while another node holds
// it. Every start-up failure returns an error naming its cause, after
// closing what New had opened.
func New(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var lock *dirLock
	if cfg.DataDir != "" {
		if lock, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	n, err := newOwnHost(ctx, cfg, lock)
	if err != nil {
		return nil, errors.Join(err, lock.release())
	}
	return n, nil
}

func newOwnHost(ctx context.Context, cfg Config, lock *dirLock) (*Node, error) {
	var key crypto.PrivKey
	var err error
	if cfg.DataDir != "" {
		if key, err = LoadOrCreateIdentity(cfg.DataDir); err != nil {
			return nil, err
		}
	} else if key, _, err = crypto.GenerateEd25519Key(nil); err != nil {
		return nil, err
	}
	hopts, relays, err := cfg.hostOptions()
	if err != nil {
		return nil, err
	}
	hopts = append(hopts, resourceOption(cfg.Domain)) // node/resources.go
	h, err := libp2p.New(append([]libp2p.Option{libp2p.Identity(key), libp2p.ListenAddrStrings(cfg.ListenAddrs...)}, hopts...)...)
	if err != nil {
		return nil, fmt.Errorf("node: libp2p host (listen_addrs): %w", err)
	}
	n, err := newNode(ctx, h, key, true, cfg, lock)
	if err != nil {
		return nil, errors.Join(err, h.Close())
	}
	relays.node.Store(n)
	if !cfg.NAT.DisableHolePunching {
		n.punchWhenReady()
	}
	return n, nil
}

// NewWithHost adds hiersip to an existing libp2p host, such as one an
// application already runs with its own protocols and DHTs. The host's
// peerstore must hold its private key (libp2p.New's hosts do). Close leaves
// the host running. Like New, it locks cfg.DataDir (if set) for as long as
// the node runs.
func NewWithHost(ctx context.Context, h host.Host, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, ErrNoKey
	}
	var lock *dirLock
	if cfg.DataDir != "" { // the peer caches are kept there
		if lock, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	n, err := newNode(ctx, h, key, false, cfg, lock)
	if err != nil {
		return nil, errors.Join(err, lock.release())
	}
	return n, nil
}

// newNode builds the node on h. On error it has closed what it started, but
// not h or lock: the caller releases those.
func newNode(ctx context.Context, h host.Host, key crypto.PrivKey, own bool, cfg Config, lock *dirLock) (*Node, error) {
	// Every component logs through this logger and adds only keys of its
	// own ("component", "overlay"; "peer" is the peer a record is about): each key
	// once. The election runner adds "domain" itself and gets the logger
	// without it.
	nodeLog := cfg.Logger.With("node", h.ID().String())
	log := nodeLog.With("domain", cfg.Domain)
	ovOpts := append([]domains.OverlayOption{domains.WithClock(cfg.Clock), domains.WithLogger(log),
		domains.WithRefusalHook(cfg.Metrics.Refused)}, cfg.lookupLimit()...)
	var userKeys map[string]crypto.PrivKey
	if cfg.SIP != nil && cfg.SIP.UsersFile != "" {
		var err error
		if userKeys, err = loadUserKeys(cfg.SIP.UsersFile); err != nil {
			return nil, &ConfigError{"sip.users_file", err}
		}
	}
	var enr *enrollment
	if cfg.Enrollment != nil {
		var err error
		if enr, err = newEnrollment(cfg.Enrollment, cfg.Domain, h.ID()); err != nil {
			return nil, err
		}
		ovOpts = append(ovOpts, domains.WithEnrollment(enr.state))
	}
	ov, err := domains.NewDomainOverlay(h, cfg.Domain, ovOpts...)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, h: h, ownHost: own, key: key, log: log, nodeLog: nodeLog, domain: ov, enroll: enr, lock: lock,
		regs:   make(map[domains.AOR]*registration),
		joined: make(chan struct{}),
		ready:  newReadiness(),
	}
	n.userKeys.Store(&userKeys)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	cfg.Metrics.bind(n)
	n.boot, err = n.newBootstrapper(ov, cfg.Bootstrap)
	if err != nil {
		n.cancel()
		return nil, errors.Join(&ConfigError{"bootstrap", err}, ov.Close())
	}
	if err := n.boot.Start(n.ctx); err != nil {
		n.cancel()
		return nil, errors.Join(err, ov.Close())
	}
	if cfg.GlobalSeed {
		if _, err := n.JoinGlobal(ctx); err != nil {
			return nil, errors.Join(err, n.Close())
		}
	}
	if err := n.watchAddrs(); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	n.logConns()
	n.watchStaleConns()
	if err := n.startServices(); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	n.wg.Add(2)
	go n.loop()
	go n.watchReady()
	return n, nil
}

// Host returns the node's libp2p host.
func (n *Node) Host() host.Host { return n.h }

// ID returns the node's peer ID, its Node-ID.
func (n *Node) ID() peer.ID { return n.h.ID() }

// Domain returns the node's domain.
func (n *Node) Domain() string { return n.cfg.Domain }

// KnownDomains returns the node's domain and the configured known domains.
func (n *Node) KnownDomains() []string { return append([]string{n.cfg.Domain}, n.cfg.KnownDomains...) }

// DomainOverlay returns the node's domain overlay.
func (n *Node) DomainOverlay() *domains.Overlay { return n.domain }

// PrivKey returns the node's identity key, which signs its records.
func (n *Node) PrivKey() crypto.PrivKey { return n.key }

// Joined is closed once the node's domain overlay has a peer.
func (n *Node) Joined() <-chan struct{} { return n.joined }

// ParseAOR parses s and checks that it belongs to the node's domain.
func (n *Node) ParseAOR(s string) (domains.AOR, error) {
	a, err := domains.ParseAOR(s)
	if err != nil {
		return a, err
	}
	if d, _ := domains.DomainOf(a.Host, n.KnownDomains()); d != n.cfg.Domain {
		return a, fmt.Errorf("%w: %s belongs to %s, this node to %s", ErrNotInDomain, a, d, n.cfg.Domain)
	}
	return a, nil
}

func (n *Node) checkAOR(a domains.AOR) error {
	if d, _ := domains.DomainOf(a.Host, n.KnownDomains()); d != n.cfg.Domain {
		return fmt.Errorf("%w: %s belongs to %s, this node to %s", ErrNotInDomain, a, d, n.cfg.Domain)
	}
	return nil
}

func (n *Node) closed() bool { return n.ctx.Err() != nil }

// IsClosed reports whether Close has been called.
func (n *Node) IsClosed() bool { return n.closed() }

// nextSeq returns a sequence number above every earlier one and above
// floor, also across restarts: it follows the clock in microseconds
// (domains.SeqAt), which validators bound to MaxClockSkew ahead of theirs.
func (n *Node) nextSeq(floor uint64) uint64 {
	s := domains.SeqAt(n.cfg.Clock.Now())
	s = max(s, n.seq+1, floor)
	n.seq = s
	return s
}

// ErrTaken: the AOR's live binding belongs to another owner (open domain:
// another user key, or another node for a user without key). It matches
// sipbridge.ErrForbidden, so the bridge answers 403.
var ErrTaken = errors.New("node: name registered by another owner")

// owner returns the owner a binding of aor by this node would have.
func (n *Node) owner(aor domains.AOR) string {
	b := domains.Binding{Peer: n.h.ID()}
	if k := n.userKey(aor); k != nil {
		b.Owner = k.GetPublic()
	}
	return n.ownerOf(&b)
}

// ownerOf is the owner of b as this node's validator sees it: in an enrolled
// domain every certified binding has the same owner.
func (n *Node) ownerOf(b *domains.Binding) string {
	if n.enroll != nil {
		return "certified"
	}
	return b.OwnerID()
}

// Register stores or refreshes the binding of aor to this node with the
// given UA contacts. The binding is sealed with the node's key and, when
// the users file holds a key for the user, signed with it as the owner; the
// contacts' URIs stay at the node. An empty contact list unregisters. The
// node re-stores the binding until its contacts expire.
//
// The first registration of an AOR at this node looks the AOR up: a live
// binding of another owner refuses it (ErrTaken, 403 at the bridge), except
// a keyless binding of this very node, which it first withdraws; a binding
// of the same owner served by another node (the phone moved here) is
// continued with a higher sequence number. A change that only drops lapsed
// contacts is stored only while the AOR's binding still names this node.
func (n *Node) Register(ctx context.Context, aor domains.AOR, contacts []domains.Contact) error {
	if len(contacts) == 0 {
		return n.Unregister(ctx, aor)
	}
	if n.closed() {
		return ErrClosed
	}
	if err := n.checkAOR(aor); err != nil {
		return err
	}
	if len(contacts) > domains.MaxContacts {
		return fmt.Errorf("node: %d contacts for %s, limit %d", len(contacts), aor, domains.MaxContacts)
	}
	now := n.cfg.Clock.Now()
	var expires time.Time
	for _, c := range contacts {
		if c.Expires.After(expires) {
			expires = c.Expires
		}
	}
	if !expires.After(now) {
		return n.Unregister(ctx, aor)
	}
	cert, err := n.certFor(aor)
	if err != nil {
		n.forget(aor)
		return err
	}
	n.mu.Lock()
	prev, had := n.regs[aor]
	live := had && !prev.binding.Removed && prev.binding.Live(now)
	n.mu.Unlock()
	var floor uint64
	switch {
	case !live:
		if floor, err = n.claim(ctx, aor, now); err != nil {
			n.forget(aor)
			return err
		}
	case !addsContact(prev.binding.Contacts, contacts) && !n.stillOurs(ctx, aor, prev.binding):
		n.forget(aor) // the user registered elsewhere since
		return nil
	}
	n.mu.Lock()
	created := now
	if live {
		created = prev.binding.Created
	}
	b := domains.Binding{
		AOR: aor.String(), Peer: n.h.ID(), Addrs: n.advertisedAddrs(),
		Contacts: append([]domains.Contact(nil), contacts...),
		Created:  created, Expires: expires, Seq: n.nextSeq(floor), Cert: cert,
	}
	n.mu.Unlock()
	start := time.Now()
	err = n.publish(ctx, aor, b)
	n.cfg.Metrics.observeRegistration("register", time.Since(start), err)
	return err
}

// claim looks aor up before this node first registers it, and returns the
// sequence number floor to continue its owner's binding, or ErrTaken.
func (n *Node) claim(ctx context.Context, aor domains.AOR, now time.Time) (uint64, error) {
	cur, err := n.domain.LookupBinding(ctx, aor)
	if errors.Is(err, domains.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("node: looking %s up before registering it: %w", aor, err)
	}
	if !cur.Live(now) || n.ownerOf(cur) == n.owner(aor) {
		return cur.Seq + 1, nil
	}
	if cur.Peer == n.h.ID() && cur.Owner == nil {
		// This node's own keyless binding (the users file has gained a key
		// for the user): withdraw it, then claim the name as its owner.
		tomb := domains.Binding{AOR: aor.String(), Peer: n.h.ID(), Addrs: n.advertisedAddrs(),
			Created: cur.Created, Expires: cur.Expires, Removed: true, Cert: cur.Cert}
		n.mu.Lock()
		tomb.Seq = n.nextSeq(cur.Seq + 1)
		n.mu.Unlock()
		if err := n.domain.PutBinding(ctx, n.key, &tomb); err != nil {
			return 0, err
		}
		return 0, nil
	}
	reason := fmt.Sprintf("%s is registered by another owner until %s", aor, cur.Expires.UTC().Format(time.RFC3339))
	return 0, fmt.Errorf("%w: %w", ErrTaken, &sipbridge.ForbiddenError{Reason: reason})
}

// stillOurs reports whether the AOR's binding in the overlay is still this
// node's (or absent): the user has not registered at another node since.
func (n *Node) stillOurs(ctx context.Context, aor domains.AOR, ours domains.Binding) bool {
	cur, err := n.domain.LookupBinding(ctx, aor)
	if err != nil {
		return true // not found, or no answer: keep serving
	}
	return cur.Peer == n.h.ID() || cur.Seq <= ours.Seq || n.ownerOf(cur) != n.ownerOf(&ours)
}

// addsContact reports whether next registers a contact prev does not hold,
// or extends one: a change the user made at this node, rather than contacts
// lapsing.
func addsContact(prev, next []domains.Contact) bool {
	for _, c := range next {
		found := false
		for _, p := range prev {
			if p.URI == c.URI && !c.Expires.After(p.Expires) {
				found = true
				break
			}
		}
		if !found {
			return true
		}
	}
	return false
}

// publish seals b as published (contacts redacted, owner-signed with the
// user's key if there is one), stores it and keeps it for re-stores.
func (n *Node) publish(ctx context.Context, aor domains.AOR, b domains.Binding) error {
	pub := b.Redacted()
	if k := n.userKey(aor); k != nil {
		if err := pub.SignOwner(k); err != nil {
			return err
		}
	}
	sealed, err := pub.Seal(n.key)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.regs[aor] = &registration{binding: b, sealed: sealed}
	n.mu.Unlock()
	return n.domain.PutSealedBinding(ctx, aor, sealed)
}

// forget stops re-storing aor (the node may no longer register it).
func (n *Node) forget(aor domains.AOR) {
	n.mu.Lock()
	delete(n.regs, aor)
	n.mu.Unlock()
}

// Unregister stores a tombstone for aor that wins over the node's earlier
// bindings; lookups then report not found. It leaves alone a binding the
// user made at another node since.
func (n *Node) Unregister(ctx context.Context, aor domains.AOR) error {
	if n.closed() {
		return ErrClosed
	}
	if err := n.checkAOR(aor); err != nil {
		return err
	}
	cert, err := n.certFor(aor)
	if err != nil {
		n.forget(aor)
		return err
	}
	now := n.cfg.Clock.Now()
	n.mu.Lock()
	prev, had := n.regs[aor]
	n.mu.Unlock()
	var floor uint64
	cur, lerr := n.domain.LookupBinding(ctx, aor)
	switch {
	case lerr != nil:
	case cur.Peer != n.h.ID() && cur.Live(now):
		// Served by another node now (or another owner's): not ours to remove.
		n.forget(aor)
		return nil
	default:
		floor = cur.Seq + 1
	}
	n.mu.Lock()
	expires := now.Add(time.Minute)
	created := now
	if had {
		if prev.binding.Expires.After(expires) {
			expires = prev.binding.Expires
		}
		created = prev.binding.Created
	}
	b := domains.Binding{
		AOR: aor.String(), Peer: n.h.ID(), Addrs: n.advertisedAddrs(),
		Created: created, Expires: expires, Seq: n.nextSeq(floor), Removed: true, Cert: cert,
	}
	n.mu.Unlock()
	start := time.Now()
	err = n.publish(ctx, aor, b)
	n.cfg.Metrics.observeRegistration("unregister", time.Since(start), err)
	return err
}

// Registrations returns the live bindings this node serves.
func (n *Node) Registrations() []domains.Binding {
	now := n.cfg.Clock.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []domains.Binding
	for _, r := range n.regs {
		if r.binding.Live(now) {
			out = append(out, r.binding)
		}
	}
	return out
}

// Lookup resolves aor in the node's domain overlay. A missing, expired or
// unregistered AOR returns an error wrapping ErrNotFound; an AOR of another
// domain returns ErrNotInDomain (calls to it go through the proxies).
func (n *Node) Lookup(ctx context.Context, aor domains.AOR) (*domains.Binding, error) {
	if n.closed() {
		return nil, ErrClosed
	}
	if err := n.checkAOR(aor); err != nil {
		return nil, err
	}
	ctx, cancel := n.lookupContext(ctx)
	defer cancel()
	start := time.Now()
	b, err := n.domain.GetBinding(ctx, aor)
	n.cfg.Metrics.observeLookup(overlayDomain, "binding", time.Since(start), err)
	if n.cfg.LookupTrace != nil {
		var found []peer.ID
		if b != nil {
			found = []peer.ID{b.Peer}
		}
		n.traceLookup(start, overlayDomain, "binding", aor.String(), SourceOverlay, found, err)
	}
	return b, err
}

// advertisedAddrs returns the addresses put into records: the host's
// addresses, loopback kept (tests and single-machine setups need it).
func (n *Node) advertisedAddrs() []ma.Multiaddr {
	addrs := n.h.Addrs()
	if len(addrs) > domains.MaxAddrs {
		addrs = addrs[:domains.MaxAddrs]
	}
	return addrs
}

// loop re-stores the node's bindings: at every RepublishInterval, and at
// once when the node first joins its domain (a lone node's records were only
// stored locally).
func (n *Node) loop() {
	defer n.wg.Done()
	t := n.cfg.Clock.Ticker(n.cfg.RepublishInterval)
	defer t.Stop()
	var revC <-chan time.Time
	if n.enroll != nil {
		rt := n.cfg.Clock.Ticker(n.cfg.Enrollment.RefreshInterval)
		defer rt.Stop()
		revC = rt.C
	}
	joinedCh := n.boot.Joined()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-joinedCh:
			joinedCh = nil
			close(n.joined)
			n.log.Info("joined domain", "peers", n.domain.RoutingTableSize())
			n.refreshRevocations(true)
			n.republish()
		case <-t.C:
			n.refreshRevocations(true)
			n.republish()
		case <-revC:
			n.refreshRevocations(false)
		}
	}
}

func (n *Node) republish() {
	now := n.cfg.Clock.Now()
	type job struct {
		aor    domains.AOR
		b      domains.Binding
		sealed []byte // unchanged record to re-store; nil: store b anew
	}
	var todo []job
	addrs := n.advertisedAddrs()
	n.mu.Lock()
	for aor, r := range n.regs {
		if !now.Before(r.binding.Expires) {
			delete(n.regs, aor)
			continue
		}
		b := r.binding
		b.Contacts = nil
		for _, c := range r.binding.Contacts {
			if c.Expires.After(now) {
				b.Contacts = append(b.Contacts, c)
			}
		}
		if len(b.Contacts) == len(r.binding.Contacts) && sameAddrs(b.Addrs, addrs) && r.sealed != nil {
			// Nothing changed: re-store the same record. It cannot displace a
			// newer binding of the user made at another node.
			todo = append(todo, job{aor: aor, sealed: r.sealed})
			continue
		}
		b.Addrs = addrs
		todo = append(todo, job{aor: aor, b: b})
	}
	n.mu.Unlock()
	for _, j := range todo {
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		var err error
		switch {
		case j.sealed != nil:
			err = n.domain.PutSealedBinding(ctx, j.aor, j.sealed)
		case !n.stillOurs(ctx, j.aor, j.b):
			n.forget(j.aor)
		default:
			n.mu.Lock()
			j.b.Seq = n.nextSeq(0)
			n.mu.Unlock()
			err = n.publish(ctx, j.aor, j.b)
		}
		if err != nil && n.ctx.Err() == nil {
			n.log.Warn("re-store binding failed", "aor", j.aor, "err", err)
		}
		cancel()
	}
}

func sameAddrs(a, b []ma.Multiaddr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// Close leaves the domain (and the global overlay, if the node is in it),
// saves the peer cache, stops every goroutine the node started and, if the
// node created its host, closes it. A second Close returns an error wrapping
// net.ErrClosed.
func (n *Node) Close() error {
	err := ErrClosed
	n.closeOnce.Do(func() {
		errs := []error{n.stopServices()}
		n.stopProxyRole()
		n.cancel()
		n.wg.Wait()
		errs = append(errs, n.boot.Close())
		n.mu.Lock()
		g := n.global
		n.global = nil
		n.mu.Unlock()
		if g != nil {
			errs = append(errs, g.close())
		}
		errs = append(errs, n.domain.Close())
		if n.ownHost {
			errs = append(errs, n.h.Close())
		}
		errs = append(errs, n.lock.release())
		err = errors.Join(errs...)
	})
	return err
}
