package domains

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/amino"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/crypto"
	pb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
)

// ProtocolPrefix returns the kad-dht protocol prefix of an overlay:
// "/hiersip/<domain>", or "/hiersip/global" for the global overlay.
func ProtocolPrefix(name string) protocol.ID { return protocol.ID("/hiersip/" + name) }

// ErrOverlayClosed is returned by an overlay's operations after Close.
var ErrOverlayClosed = fmt.Errorf("domains: overlay closed: %w", net.ErrClosed)

// OverlayOption configures an Overlay.
type OverlayOption func(*overlayConfig) error

type overlayConfig struct {
	datastore ds.Batching
	mode      dht.ModeOpt
	clock     clock.Clock
	logger    *slog.Logger
	quorum    int
	dhtOpts   []dht.Option
	enroll    *Enrollment
	auths     map[string]crypto.PubKey
	onRefuse  func(record, reason string)
	lookupLim rateLimitT
	lookupBur int
}

// DefaultQuorum is how many peers' answers a lookup waits for before it
// settles on the best value (kad-dht's default waits for the whole lookup).
const DefaultQuorum = 4

// WithQuorum sets how many answers a lookup waits for (default DefaultQuorum;
// 0 waits for the whole lookup).
func WithQuorum(n int) OverlayOption {
	return func(c *overlayConfig) error {
		if n < 0 {
			return fmt.Errorf("domains: WithQuorum: %d is negative", n)
		}
		c.quorum = n
		return nil
	}
}

// WithDatastore gives the overlay a datastore (default: a new in-memory one).
// Never share one datastore between overlays: records would mix.
func WithDatastore(d ds.Batching) OverlayOption {
	return func(c *overlayConfig) error {
		if d == nil {
			return errors.New("domains: WithDatastore: nil datastore")
		}
		c.datastore = d
		return nil
	}
}

// WithMode sets the kad-dht mode (default dht.ModeServer: on private networks
// ModeAuto stays a client forever).
func WithMode(m dht.ModeOpt) OverlayOption {
	return func(c *overlayConfig) error { c.mode = m; return nil }
}

// WithClock sets the clock records are validated against: their expiry,
// issue times and sequence numbers (default the system clock).
func WithClock(clk clock.Clock) OverlayOption {
	return func(c *overlayConfig) error {
		if clk == nil {
			return errors.New("domains: WithClock: nil clock")
		}
		c.clock = clk
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) OverlayOption {
	return func(c *overlayConfig) error {
		if l == nil {
			return errors.New("domains: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithEnrollment makes a domain overlay enrolled: its validator accepts only
// bindings with a valid certificate of e's authority, and it holds e's
// revocation list under RevocationKey. e.Domain() must be the overlay's
// domain. Not for the global overlay.
func WithEnrollment(e *Enrollment) OverlayOption {
	return func(c *overlayConfig) error {
		if e == nil {
			return errors.New("domains: WithEnrollment: nil enrollment")
		}
		c.enroll = e
		return nil
	}
}

// WithAuthorities gives the overlay the authorities of enrolled domains it
// knows: their proxy records must name that authority and carry a valid
// certificate of it. A domain overlay of an enrolled domain knows its own
// authority from WithEnrollment.
func WithAuthorities(a map[string]crypto.PubKey) OverlayOption {
	return func(c *overlayConfig) error {
		for d, k := range a {
			if err := ValidateDomain(d); err != nil {
				return fmt.Errorf("domains: WithAuthorities: %w", err)
			}
			if k == nil || k.Type() != pb.KeyType_Ed25519 {
				return fmt.Errorf("domains: WithAuthorities: %s: not an Ed25519 key", d)
			}
		}
		c.auths = a
		return nil
	}
}

// WithRefusalHook sets a function called for every record the overlay's
// validators refuse, with the record kind ("binding", "proxy",
// "revocations", "lookup") and a reason (the Reason constants). It must be
// quick and safe for concurrent use (a metrics counter).
func WithRefusalHook(f func(record, reason string)) OverlayOption {
	return func(c *overlayConfig) error { c.onRefuse = f; return nil }
}

// Default bound of the GET_VALUE requests an overlay answers per peer. It is
// set for the members' own work, not against guessing names: a first
// REGISTER makes about three lookups at every peer close to the AOR (the
// owner check, the device set read and its read-back), so a node taking 250
// first registrations a second asks each peer about 750 times a second (at
// 20/s, 279 of 300 such registrations timed out after 10 s in a domain of six
// nodes). Many peer IDs multiply any per-peer rate anyway.
const (
	DefaultLookupRate  = 1000 // per second
	DefaultLookupBurst = 2000
)

// WithLookupLimit bounds the GET_VALUE requests the overlay answers per
// remote peer: rate per second, burst at once (defaults DefaultLookupRate,
// DefaultLookupBurst). Requests beyond it wait their turn, so guessing names
// is slow; a peer that would wait more than 10 s has its stream reset.
// rate 0 turns the limit off.
func WithLookupLimit(rate float64, burst int) OverlayOption {
	return func(c *overlayConfig) error {
		if rate < 0 || burst < 0 || (rate > 0 && burst < 1) {
			return fmt.Errorf("domains: WithLookupLimit: rate %v, burst %d", rate, burst)
		}
		c.lookupLim, c.lookupBur = rateLimit(rate), burst
		return nil
	}
}

// WithDHTOptions passes further options to kad-dht, after hiersip's own.
func WithDHTOptions(opts ...dht.Option) OverlayOption {
	return func(c *overlayConfig) error { c.dhtOpts = append(c.dhtOpts, opts...); return nil }
}

// Overlay is one kad-dht namespace on a libp2p host: a domain overlay (the
// draft's local overlay) or the global overlay of proxies. Several overlays,
// and any DHT of the application, can run on one host without their records
// or routing tables mixing.
type Overlay struct {
	name     string // domain name, or GlobalName
	global   bool
	h        host.Host
	dht      *dht.IpfsDHT
	now      func() time.Time
	log      *slog.Logger
	quorum   int
	enroll   *Enrollment
	vals     record.NamespacedValidator
	confl    conflictLog
	lim      *peerLimiter
	nSettled atomic.Int64        // lookups that settled a conflict (tests)
	store    *records.ValueStore // a view of the DHT's value store, to read this node's copy

	closeOnce sync.Once
	closed    chan struct{}
}

// NewDomainOverlay joins h to the domain overlay of domain. It starts no
// bootstrap: connect the host to peers of the domain (package bootstrap) and
// the overlay picks them up.
func NewDomainOverlay(h host.Host, domain string, opts ...OverlayOption) (*Overlay, error) {
	if err := ValidateDomain(domain); err != nil {
		return nil, err
	}
	return newOverlay(h, domain, false, opts)
}

// NewGlobalOverlay joins h to the global overlay, where proxies publish their
// domains' Overlay-Resource-IDs.
func NewGlobalOverlay(h host.Host, opts ...OverlayOption) (*Overlay, error) {
	return newOverlay(h, GlobalName, true, opts)
}

func newOverlay(h host.Host, name string, global bool, opts []OverlayOption) (*Overlay, error) {
	if h == nil {
		return nil, errors.New("domains: nil host")
	}
	cfg := overlayConfig{mode: dht.ModeServer, clock: clock.New(), logger: slog.New(slog.DiscardHandler), quorum: DefaultQuorum,
		lookupLim: DefaultLookupRate, lookupBur: DefaultLookupBurst}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.datastore == nil {
		cfg.datastore = dssync.MutexWrap(ds.NewMapDatastore())
	}
	if cfg.enroll != nil && (global || cfg.enroll.Domain() != name) {
		return nil, fmt.Errorf("domains: enrollment of %s given to overlay %s", cfg.enroll.Domain(), name)
	}
	o := &Overlay{
		name: name, global: global, h: h, now: cfg.clock.Now, quorum: cfg.quorum, enroll: cfg.enroll,
		log:    cfg.logger.With("overlay", name),
		closed: make(chan struct{}),
	}
	refuse := func(kind string) func(string) {
		if cfg.onRefuse == nil {
			return nil
		}
		return func(reason string) { cfg.onRefuse(kind, reason) }
	}
	val := record.NamespacedValidator{}
	if global {
		val[NSOverlay] = ProxyValidator{Global: true, Now: cfg.clock.Now, Authorities: cfg.auths,
			OnConflict: o.confl.note, OnRefuse: refuse("proxy")}
	} else {
		val[NSBinding] = BindingValidator{Domain: name, Now: cfg.clock.Now, Enrollment: cfg.enroll,
			OnConflict: o.confl.note, OnRefuse: refuse("binding")}
		val[NSLocalProxy] = ProxyValidator{Domain: name, Now: cfg.clock.Now, Enrollment: cfg.enroll, Authorities: cfg.auths,
			OnConflict: o.confl.note, OnRefuse: refuse("proxy")}
		if cfg.enroll != nil {
			val[NSRevocation] = RevocationValidator{Enrollment: cfg.enroll}
		}
		// Issue 19: a user's devices at every serving node, and messages that wait.
		val[NSDeviceSet] = DeviceSetValidator{Domain: name, Now: cfg.clock.Now, Enrollment: cfg.enroll,
			OnConflict: o.confl.note, OnRefuse: refuse("devices")}
		val[NSMail] = MailValidator{Domain: name, Now: cfg.clock.Now, OnRefuse: refuse("mail")}
		val[NSMailboxKey] = MailboxKeyValidator{Domain: name, Now: cfg.clock.Now, Enrollment: cfg.enroll,
			OnRefuse: refuse("mailbox-key")}
	}
	o.vals = val
	o.store = records.NewValueStore(cfg.datastore, val, amino.DefaultMaxRecordAge)
	if cfg.lookupLim > 0 {
		o.lim = newPeerLimiter(cfg.lookupLim, cfg.lookupBur, refuse("lookup"))
	}
	dopts := append([]dht.Option{
		dht.ProtocolPrefix(ProtocolPrefix(name)),
		dht.Mode(cfg.mode),
		dht.Datastore(cfg.datastore),
		dht.Validator(val),
		dht.DisableProviders(),
	}, cfg.dhtOpts...)
	d, err := dht.New(relayedOK{Host: h, lim: o.lim}, dopts...)
	if err != nil {
		return nil, fmt.Errorf("domains: overlay %s: %w", name, err)
	}
	o.dht = d
	return o, nil
}

// relayedOK is the host an overlay's kad-dht works on: h, whose relayed
// ("limited") connections it may use. kad-dht alone never opens a stream
// over one. For a member behind a NAT whose hole punching failed, it waits
// for a direct connection that never comes, holding its one message sender
// to that member meanwhile: the routing table's check of the new member
// blocks every store and lookup that asks it, for up to 10 s. Seen in the
// NAT test bed, where a node's REGISTERs timed out while a lone NATed member
// was reachable only through its relay. With relayedOK the member answers
// through the relay like any other. A hiersip relay allows 128 MiB per
// direction and connection by default; a store or lookup sends a few kad-dht
// messages of a few hundred bytes.
//
// It also hands kad-dht's inbound streams through the overlay's lookup
// limit (peerLimiter), when there is one.
type relayedOK struct {
	host.Host
	lim *peerLimiter
}

func (h relayedOK) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	if h.lim == nil {
		h.Host.SetStreamHandler(pid, handler)
		return
	}
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(h.lim.wrap(s)) })
}

func (h relayedOK) Connect(ctx context.Context, pi peer.AddrInfo) error {
	return h.Host.Connect(network.WithAllowLimitedConn(ctx, "hiersip-overlay"), pi)
}

func (h relayedOK) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	return h.Host.NewStream(network.WithAllowLimitedConn(ctx, "hiersip-overlay"), p, pids...)
}

// Name returns the domain name, or "global".
func (o *Overlay) Name() string { return o.name }

// Protocol returns the overlay's kad-dht protocol ID, e.g. /hiersip/pastry/kad/1.0.0.
func (o *Overlay) Protocol() protocol.ID { return ProtocolPrefix(o.name) + "/kad/1.0.0" }

// DHT returns the underlying kad-dht.
func (o *Overlay) DHT() *dht.IpfsDHT { return o.dht }

// RoutingTableSize returns the number of peers in the overlay's routing table.
func (o *Overlay) RoutingTableSize() int { return o.dht.RoutingTable().Size() }

// Joined reports whether the overlay has at least one peer in its routing table.
func (o *Overlay) Joined() bool { return o.RoutingTableSize() > 0 }

// Peers returns the overlay's routing-table peers with their known addresses.
func (o *Overlay) Peers() []peer.AddrInfo {
	ids := o.dht.RoutingTable().ListPeers()
	out := make([]peer.AddrInfo, 0, len(ids))
	for _, id := range ids {
		out = append(out, o.h.Peerstore().PeerInfo(id))
	}
	return out
}

func (o *Overlay) isClosed() bool {
	select {
	case <-o.closed:
		return true
	default:
		return false
	}
}

// put stores a sealed value. A lone node keeps the value locally (kad-dht
// stores it before looking for peers) and reports success: the owner
// re-stores it once the overlay has peers.
func (o *Overlay) put(ctx context.Context, key string, value []byte) error {
	if o.isClosed() {
		return ErrOverlayClosed
	}
	err := o.dht.PutValue(ctx, key, value)
	if err != nil && !o.Joined() && o.localHas(ctx, key, value) {
		o.log.Debug("stored locally only: overlay has no peers yet")
		return nil
	}
	return err
}

func (o *Overlay) localHas(ctx context.Context, key string, value []byte) bool {
	v, ok := o.localValue(ctx, key)
	return ok && string(v) == string(value)
}

// localValue returns this node's own valid copy of key, if it holds one.
// (kad-dht's routing.Offline still asks the network.)
func (o *Overlay) localValue(ctx context.Context, key string) ([]byte, bool) {
	rec, err := o.store.Get(ctx, key)
	if err != nil || rec == nil || o.vals.Validate(key, rec.GetValue()) != nil {
		return nil, false
	}
	return rec.GetValue(), true
}

// StoredBinding returns the binding of aor this node holds as a storer (not
// a lookup), or ErrNotFound.
func (o *Overlay) StoredBinding(ctx context.Context, aor AOR) (*Binding, error) {
	v, ok := o.localValue(ctx, BindingKey(aor))
	if !ok {
		return nil, ErrNotFound
	}
	return OpenBinding(v)
}

// StoredProxyRecord returns the proxy record of domain this node holds as a
// storer, or ErrNotFound.
func (o *Overlay) StoredProxyRecord(ctx context.Context, domain string) (*ProxyRecord, error) {
	v, ok := o.localValue(ctx, ProxyKey(domain, o.global))
	if !ok {
		return nil, ErrNotFound
	}
	return OpenProxyRecord(v)
}

// get returns the best value of key, or ErrNotFound.
func (o *Overlay) get(ctx context.Context, key string) ([]byte, error) {
	if o.isClosed() {
		return nil, ErrOverlayClosed
	}
	start := time.Now()
	v, err := o.dht.GetValue(ctx, key, dht.Quorum(o.quorum))
	if o.confl.since(key, start) {
		// Claims that do not continue each other were seen: the arrival order
		// decided, which a peer near the key can win. Ask the closest storers.
		return o.settle(ctx, key)
	}
	switch {
	case errors.Is(err, routing.ErrNotFound):
		return nil, ErrNotFound
	case err != nil && v == nil && !o.Joined():
		return nil, fmt.Errorf("%w (overlay %s has no peers: %v)", ErrNotFound, o.name, err)
	case err != nil && v == nil:
		return nil, err
	}
	return v, nil
}

// PutBinding signs b with key (the serving node's key, whose peer ID b.Peer
// must be) and stores it at the AOR's User-Resource-ID.
func (o *Overlay) PutBinding(ctx context.Context, key crypto.PrivKey, b *Binding) error {
	if o.global {
		return errors.New("domains: bindings belong in a domain overlay, not the global overlay")
	}
	aor, err := ParseAOR(b.AOR)
	if err != nil {
		return err
	}
	val, err := b.Seal(key)
	if err != nil {
		return err
	}
	return o.put(ctx, BindingKey(aor), val)
}

// PutSealedBinding stores a binding sealed before (Binding.Seal), unchanged:
// a re-store of the same record.
func (o *Overlay) PutSealedBinding(ctx context.Context, aor AOR, sealed []byte) error {
	if o.global {
		return errors.New("domains: bindings belong in a domain overlay, not the global overlay")
	}
	return o.put(ctx, BindingKey(aor), sealed)
}

// GetBinding looks up the binding of aor. A missing, expired or removed
// binding returns an error wrapping ErrNotFound.
func (o *Overlay) GetBinding(ctx context.Context, aor AOR) (*Binding, error) {
	b, err := o.LookupBinding(ctx, aor)
	if err != nil {
		return nil, err
	}
	if !b.Live(o.now()) {
		return nil, fmt.Errorf("lookup %s: %w (unregistered)", aor, ErrNotFound)
	}
	return b, nil
}

// LookupBinding looks up the binding record of aor, tombstones included: the
// record every lookup settles on (see the package doc on conflicts). A
// missing or expired binding returns an error wrapping ErrNotFound.
func (o *Overlay) LookupBinding(ctx context.Context, aor AOR) (*Binding, error) {
	if o.global {
		return nil, errors.New("domains: bindings belong in a domain overlay, not the global overlay")
	}
	val, err := o.get(ctx, BindingKey(aor))
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", aor, err)
	}
	b, err := BindingValidator{Domain: o.name, Now: o.now, Enrollment: o.enroll}.open(BindingKey(aor), val)
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", aor, err)
	}
	return b, nil
}

// DeviceSetValidator returns the validator of the overlay's device sets
// (the zero validator for the global overlay).
func (o *Overlay) DeviceSetValidator() DeviceSetValidator {
	v, _ := o.vals[NSDeviceSet].(DeviceSetValidator)
	return v
}

// LookupDevices looks up the device set of aor (LookupDeviceSet).
func (o *Overlay) LookupDevices(ctx context.Context, aor AOR) (*DeviceSet, error) {
	if o.isClosed() {
		return nil, ErrOverlayClosed
	}
	set, err := LookupDeviceSet(ctx, o.dht, o.DeviceSetValidator(), aor)
	if err != nil && !errors.Is(err, ErrNotFound) && !o.Joined() {
		return nil, fmt.Errorf("%w (overlay %s has no peers: %v)", ErrNotFound, o.name, err)
	}
	return set, err
}

// PublishDevices stores this node's entry of p.AOR's device set
// (PublishDevices).
func (o *Overlay) PublishDevices(ctx context.Context, p DevicePublish) (*DeviceSet, error) {
	if o.isClosed() {
		return nil, ErrOverlayClosed
	}
	return PublishDevices(ctx, o.dht, o.DeviceSetValidator(), p)
}

// Enrollment returns the overlay's enrollment, nil for an open domain.
func (o *Overlay) Enrollment() *Enrollment { return o.enroll }

// ErrNotEnrolled is returned by revocation operations of an open domain.
var ErrNotEnrolled = errors.New("domains: domain is not enrolled")

// PutRevocationList verifies a sealed revocation list of the overlay's
// authority, keeps it if it is newer than the one held, and stores the
// newest list held in the overlay. Any member may store it: the list is
// signed by the authority.
func (o *Overlay) PutRevocationList(ctx context.Context, data []byte) error {
	if o.enroll == nil {
		return ErrNotEnrolled
	}
	if data != nil {
		if _, err := o.enroll.AddRevocationList(data); err != nil {
			return err
		}
	}
	raw, _ := o.enroll.RevocationList()
	if raw == nil {
		return nil
	}
	return o.put(ctx, RevocationKey(o.name), raw)
}

// FetchRevocationList looks the domain's revocation list up in the overlay
// and keeps it if it is newer than the one held; it reports whether it was.
// No list stored is not an error.
func (o *Overlay) FetchRevocationList(ctx context.Context) (bool, error) {
	if o.enroll == nil {
		return false, ErrNotEnrolled
	}
	val, err := o.get(ctx, RevocationKey(o.name))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("revocation list of %s: %w", o.name, err)
	}
	return o.enroll.AddRevocationList(val)
}

// PutProxyRecord signs r with key and stores it: in the global overlay under
// the domain's Overlay-Resource-ID, in a domain overlay under its
// LocalProxyResourceID.
func (o *Overlay) PutProxyRecord(ctx context.Context, key crypto.PrivKey, r *ProxyRecord) error {
	if !o.global && r.Domain != o.name {
		return fmt.Errorf("%w: proxy record of %s in %s", ErrNotInDomain, r.Domain, o.name)
	}
	val, err := r.Seal(key)
	if err != nil {
		return err
	}
	return o.put(ctx, ProxyKey(r.Domain, o.global), val)
}

// GetProxyRecord looks up the proxies of domain (in the global overlay, any
// domain; in a domain overlay, its own). Missing or expired: ErrNotFound.
func (o *Overlay) GetProxyRecord(ctx context.Context, domain string) (*ProxyRecord, error) {
	key := ProxyKey(domain, o.global)
	val, err := o.get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("proxies of %s: %w", domain, err)
	}
	ns, _, _ := splitKey(key)
	pv, _ := o.vals[ns].(ProxyValidator)
	pv.OnConflict, pv.OnRefuse = nil, nil
	r, err := pv.open(key, val)
	if err != nil {
		return nil, fmt.Errorf("proxies of %s: %w", domain, err)
	}
	return r, nil
}

// Close stops the overlay's DHT and removes its protocol handlers from the
// host; the host itself keeps running. A second Close returns an error
// wrapping net.ErrClosed.
func (o *Overlay) Close() error {
	err := ErrOverlayClosed
	o.closeOnce.Do(func() {
		close(o.closed)
		err = o.dht.Close()
		for _, p := range o.h.Mux().Protocols() {
			if p == o.Protocol() {
				o.h.RemoveStreamHandler(p)
			}
		}
	})
	return err
}
