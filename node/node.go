package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

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

	domain *domains.Overlay
	boot   *domains.Bootstrapper
	enroll *enrollment // nil: open domain

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

// registration is what the node keeps of an AOR it serves, to re-store it.
type registration struct {
	binding domains.Binding
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
	ovOpts := []domains.OverlayOption{domains.WithClock(cfg.Now), domains.WithLogger(log)}
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

// nextSeq returns a sequence number above every earlier one, also across
// restarts (it follows the clock in microseconds).
func (n *Node) nextSeq() uint64 {
	s := uint64(n.cfg.Now().UnixMicro())
	if s <= n.seq {
		s = n.seq + 1
	}
	n.seq = s
	return s
}

// Register stores or refreshes the binding of aor to this node with the
// given UA contacts, signed with the node's key. An empty contact list
// unregisters. The node re-stores the binding until its contacts expire.
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
	now := n.cfg.Now()
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
	created := now
	if r, ok := n.regs[aor]; ok && !r.binding.Removed && r.binding.Live(now) {
		created = r.binding.Created
	}
	b := domains.Binding{
		AOR: aor.String(), Peer: n.h.ID(), Addrs: n.advertisedAddrs(),
		Contacts: append([]domains.Contact(nil), contacts...),
		Created:  created, Expires: expires, Seq: n.nextSeq(), Cert: cert,
	}
	n.regs[aor] = &registration{binding: b}
	n.mu.Unlock()
	start := time.Now()
	err = n.domain.PutBinding(ctx, n.key, &b)
	n.cfg.Metrics.observeRegistration("register", time.Since(start), err)
	return err
}

// forget stops re-storing aor (the node may no longer register it).
func (n *Node) forget(aor domains.AOR) {
	n.mu.Lock()
	delete(n.regs, aor)
	n.mu.Unlock()
}

// Unregister stores a tombstone for aor that wins over the node's earlier
// bindings; lookups then report not found.
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
	now := n.cfg.Now()
	n.mu.Lock()
	expires := now.Add(time.Minute)
	created := now
	if r, ok := n.regs[aor]; ok {
		if r.binding.Expires.After(expires) {
			expires = r.binding.Expires
		}
		created = r.binding.Created
	}
	b := domains.Binding{
		AOR: aor.String(), Peer: n.h.ID(), Addrs: n.advertisedAddrs(),
		Created: created, Expires: expires, Seq: n.nextSeq(), Removed: true, Cert: cert,
	}
	n.regs[aor] = &registration{binding: b}
	n.mu.Unlock()
	start := time.Now()
	err = n.domain.PutBinding(ctx, n.key, &b)
	n.cfg.Metrics.observeRegistration("unregister", time.Since(start), err)
	return err
}

// Registrations returns the live bindings this node serves.
func (n *Node) Registrations() []domains.Binding {
	now := n.cfg.Now()
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
	t := time.NewTicker(n.cfg.RepublishInterval)
	defer t.Stop()
	var revC <-chan time.Time
	if n.enroll != nil {
		rt := time.NewTicker(n.cfg.Enrollment.RefreshInterval)
		defer rt.Stop()
		revC = rt.C
	}
	joinedCh := n.boot.JoinedCh()
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
	now := n.cfg.Now()
	n.mu.Lock()
	var todo []domains.Binding
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
		b.Addrs = n.advertisedAddrs()
		b.Seq = n.nextSeq()
		r.binding = b
		todo = append(todo, b)
	}
	n.mu.Unlock()
	for _, b := range todo {
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		if err := n.domain.PutBinding(ctx, n.key, &b); err != nil && n.ctx.Err() == nil {
			n.log.Warn("re-store binding failed", "aor", b.AOR, "err", err)
		}
		cancel()
	}
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
