package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hiersip/hiersip/bootstrap"
	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/mailbox"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/push"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
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
// overlay, registers its users' AORs there and looks AORs up. It is the
// composition root of the roles it plays: the location service of its SIP
// bridge (locator), the router of calls out of its domain (router), a
// proxy's duties for the election (proxyDuties, globalMembership), and the
// NAT watchers of its host.
type Node struct {
	cfg     Config
	h       host.Host
	ownHost bool
	lock    *dirLock // of DataDir, released by Close
	key     crypto.PrivKey
	log     *slog.Logger // with "node" (its peer ID) and "domain"
	nodeLog *slog.Logger // with "node" only, for the election runner

	domain *domains.Overlay
	boot   *bootstrap.Bootstrapper
	enroll *enrollment // nil: open domain
	users  *Users      // nil: no users file

	locator *locator
	router  *router
	duties  *proxyDuties
	global  *globalMembership

	election *election.Runner // election.go; nil when disabled
	bridge   *sipbridge.Bridge
	mailbox  *mailbox.Mailbox // messages that wait (mailbox.go); nil without a SIP bridge
	push     *push.Waiter     // wakes sleeping phones (push.go); nil without a gateway
	media    *media.Relay     // media.go

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	joined    chan struct{}
	ready     readiness
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
	users := cfg.users()
	if users == nil && cfg.SIP != nil && cfg.SIP.UsersFile != "" {
		var err error
		if users, err = LoadUsers(cfg.SIP.UsersFile); err != nil {
			return nil, &ConfigError{"sip.users_file", err}
		}
	}
	var enr *enrollment
	if cfg.Enrollment != nil {
		var err error
		if enr, err = newEnrollment(cfg.Enrollment, cfg.Domain, h.ID(), cfg.Clock); err != nil {
			return nil, err
		}
	}
	ovOpts := cfg.overlayOptions(log)
	if enr != nil {
		ovOpts = append(ovOpts, domains.WithEnrollment(enr.state))
	}
	ov, err := domains.NewDomainOverlay(h, cfg.Domain, ovOpts...)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, h: h, ownHost: own, key: key, log: log, nodeLog: nodeLog, domain: ov, enroll: enr, users: users, lock: lock,
		joined: make(chan struct{}),
		ready:  newReadiness(),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.compose()
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
		if _, err := n.global.join(ctx); err != nil {
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

// compose builds the node's roles on its host and domain overlay.
func (n *Node) compose() {
	cfg := n.cfg
	self := n.h.ID()
	known := append([]string{cfg.Domain}, cfg.KnownDomains...)
	lk := &lookups{node: self, timeout: cfg.LookupTimeout, metrics: cfg.Metrics, trace: cfg.LookupTrace}
	n.locator = &locator{
		ctx: n.ctx, domain: cfg.Domain, known: known, self: self, key: n.key, ov: n.domain, clock: cfg.Clock,
		addrs: n.advertisedAddrs, enroll: n.enroll, users: n.users, lookups: lk, metrics: cfg.Metrics, log: n.log,
		regs: make(map[domains.AOR]*registration),
		devs: make(map[domains.AOR][]domains.Contact), devPub: make(map[domains.AOR]devicesPublished),
		devJobs: make(map[domains.AOR]*devicesJob), wg: &n.wg,
	}
	n.global = &globalMembership{open: n.openGlobal}
	n.duties = &proxyDuties{
		ctx: n.ctx, domain: cfg.Domain, self: self, key: n.key, h: n.h, ov: n.domain, global: n.global,
		keepGlobal: cfg.GlobalSeed, addrs: n.advertisedAddrs, enroll: n.enroll, clock: cfg.Clock, log: n.log,
	}
	n.router = &router{
		domain: cfg.Domain, known: known, self: self, h: n.h, ov: n.domain, global: n.global.overlay,
		isProxy: n.duties.isProxy, elected: n.electedProxies, clock: cfg.Clock, lookups: lk, metrics: cfg.Metrics, log: n.log,
	}
}

// openGlobal creates the global overlay of proxies (a second kad-dht on
// the same host), bootstrapped from Config.Global, for the node's life.
func (n *Node) openGlobal() (*globalMember, error) {
	opts := n.cfg.overlayOptions(n.log)
	if n.enroll != nil {
		// Global storers that are members of this enrolled domain refuse its
		// records without a certificate of its authority.
		opts = append(opts, domains.WithAuthorities(map[string]crypto.PubKey{n.cfg.Domain: n.enroll.state.Authority()}))
	}
	ov, err := domains.NewGlobalOverlay(n.h, opts...)
	if err != nil {
		return nil, err
	}
	boot, err := n.newBootstrapper(ov, n.cfg.Global)
	if err != nil {
		return nil, errors.Join(&ConfigError{"global", err}, ov.Close())
	}
	if err := boot.Start(n.ctx); err != nil {
		return nil, errors.Join(err, ov.Close())
	}
	return &globalMember{ov: ov, boot: boot}, nil
}

// Host returns the node's libp2p host.
func (n *Node) Host() host.Host { return n.h }

// ID returns the node's peer ID, its Node-ID.
func (n *Node) ID() peer.ID { return n.h.ID() }

// Domain returns the node's domain.
func (n *Node) Domain() string { return n.cfg.Domain }

// Joined is closed once the node's domain overlay has a peer.
func (n *Node) Joined() <-chan struct{} { return n.joined }

// IsClosed reports whether Close has been called.
func (n *Node) IsClosed() bool { return n.closed() }

func (n *Node) closed() bool { return n.ctx.Err() != nil }

// IsProxy reports whether the node currently acts as a proxy.
func (n *Node) IsProxy() bool { return n.duties.isProxy() }

// ParseAOR parses s and checks that it belongs to the node's domain.
func (n *Node) ParseAOR(s string) (domains.AOR, error) { return n.locator.parseAOR(s) }

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
	return n.locator.Register(ctx, aor, contacts)
}

// Unregister stores a tombstone for aor that wins over the node's earlier
// bindings; lookups then report not found. It leaves alone a binding the
// user made at another node since.
func (n *Node) Unregister(ctx context.Context, aor domains.AOR) error {
	return n.locator.Unregister(ctx, aor)
}

// Lookup resolves aor in the node's domain overlay. A missing, expired or
// unregistered AOR returns an error wrapping ErrNotFound; an AOR of another
// domain returns ErrNotInDomain (calls to it go through the proxies).
func (n *Node) Lookup(ctx context.Context, aor domains.AOR) (*domains.Binding, error) {
	return n.locator.Lookup(ctx, aor)
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

// isMember reports whether peer p is a member of the node's domain as far as
// the node can tell cheaply: the node itself, a peer in the domain overlay's
// routing table, or a peer whose identify record lists the domain's DHT
// protocol (/hiersip/<domain>/kad/1.0.0). A proxy relays inter-domain
// requests only for members (sipbridge.WithMembership), and the election
// takes messages only from members: a peer that is only in the global
// overlay can use neither.
func (n *Node) isMember(p peer.ID) bool {
	if p == n.ID() {
		return true
	}
	if n.domain.DHT().RoutingTable().Find(p) != "" {
		return true
	}
	ps, err := n.h.Peerstore().SupportsProtocols(p, n.domain.Protocol())
	return err == nil && len(ps) > 0
}

// loop re-stores the node's bindings: at every RepublishInterval of its
// clock, and at once when the node first joins its domain (a lone node's
// records were only stored locally); it refreshes an enrolled domain's
// revocation list.
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
			n.locator.republish()
		case <-t.C:
			n.refreshRevocations(true)
			n.locator.republish()
			n.republishMail() // mailbox.go
		case <-revC:
			n.refreshRevocations(false)
		}
	}
}

// startServices starts the election runner and the SIP bridge, as
// configured.
func (n *Node) startServices() error {
	if !n.cfg.Election.Disable {
		ps := n.cfg.PubSub
		if ps == nil {
			var err error
			if ps, err = pubsub.NewGossipSub(n.ctx, n.h); err != nil {
				return fmt.Errorf("node: gossipsub: %w", err)
			}
		}
		if err := n.startElection(ps); err != nil {
			return err
		}
	}
	if n.cfg.SIP != nil {
		return n.startBridge()
	}
	return nil
}

// stopServices hands the proxy role over (Runner.Close) and stops the bridge.
func (n *Node) stopServices() error {
	var errs []error
	if n.election != nil {
		if err := n.election.Close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	if n.bridge != nil {
		errs = append(errs, n.bridge.Close())
	}
	if n.mailbox != nil {
		errs = append(errs, n.mailbox.Close())
	}
	if n.push != nil {
		errs = append(errs, n.push.Close())
	}
	errs = append(errs, n.stopMedia())
	return errors.Join(errs...)
}

// Close leaves the domain (and the global overlay, if the node is in it),
// saves the peer cache, stops every goroutine the node started and, if the
// node created its host, closes it. A second Close returns an error wrapping
// net.ErrClosed.
func (n *Node) Close() error {
	err := ErrClosed
	n.closeOnce.Do(func() {
		errs := []error{n.stopServices()}
		n.duties.stop()
		n.cancel()
		n.wg.Wait()
		errs = append(errs, n.boot.Close(), n.global.close(), n.domain.Close())
		if n.ownHost {
			errs = append(errs, n.h.Close())
		}
		errs = append(errs, n.lock.release())
		err = errors.Join(errs...)
	})
	return err
}
