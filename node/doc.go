// Package node is a hiersip node: a libp2p host that is a member of one
// domain overlay, registers the AORs of its users there as signed binding
// records, re-stores them before they expire, looks AORs up, and routes SIP
// within and out of its domain.
//
// A node either creates its own host (New: TCP and QUIC, identity key kept in
// the data directory) or joins an existing libp2p application's host
// (NewWithHost), in which case Close leaves that host running.
//
//	n, err := node.New(ctx, node.Config{Domain: "pastry", DataDir: dir})
//	if err != nil { ... }
//	defer n.Close()
//	err = n.WaitReady(ctx, node.ReadyDomain) // node.ReadyGlobal for other domains
//	bob, _ := n.ParseAOR("sip:bob@bupt.pastry")
//	err = n.Register(ctx, bob, []domains.Contact{{URI: "sip:bob@127.0.0.1:5062", Expires: time.Now().Add(time.Hour)}})
//	b, err := n.Lookup(ctx, bob) // from any node of the domain
//
// The node finds its domain's peers by mDNS on the LAN, pre-configured
// peers, a peer cache in its data directory and web stations (draft §4.1,
// package bootstrap; see Config.Bootstrap), and keeps trying them with
// backoff while it is alone. Joined is closed once its routing table has a
// peer. Ready (and WaitReady) say when the node routes calls: in its domain
// once it has joined, or once it has tried every bootstrap source it was
// given (a lone node); to other domains once it also knows a way out (a
// proxy of its domain, or as a serving proxy, a peer in the global overlay).
//
// A node logs nowhere unless Config.Logger is set. New and NewWithHost lock
// the data directory (LockFile, with the process ID) until Close, so that
// two nodes never share an identity; a failed start returns an error naming
// its cause (a busy SIP port is a *ConfigError of sip.udp or sip.tcp).
// Config.Validate checks a configuration without starting anything; every
// invalid setting is a *ConfigError named by the key users write in the
// daemon's configuration ("nat.relays[0]").
//
// # The exported surface
//
// What an embedding application needs, and nothing it must not call:
//
//   - starting and stopping: New, NewWithHost, Config (with BootstrapConfig,
//     NATConfig, ElectionConfig, SIPConfig, MediaConfig, EnrollmentConfig),
//     Config.Validate, ConfigError, Node.Close, Node.IsClosed; the data
//     directory's LoadIdentity, LoadOrCreateIdentity, LoadUsers (Users.Len,
//     Users.Replace) and ResourceLimits for a host of the application's own;
//   - identity and readiness: Node.Host, ID, Domain, Joined, Ready, ReadyFor,
//     WaitReady (ReadyScope), IsProxy;
//   - the location service: Node.ParseAOR, Register, Unregister, Lookup;
//     Node.Enrollment and PublishRevocationList in an enrolled domain;
//   - the services the node runs, to observe or configure further:
//     Node.Bridge, Media, Election;
//   - operating: Node.Status (Status and its parts, Status.WriteText),
//     Node.Metrics (NewMetrics, Metrics.Registry), NewAdminHandler with its
//     AdminOptions, LookupEvent (Config.LookupTrace);
//   - the package's errors (ErrClosed, ErrTaken, ErrNoCertificate, …) and
//     constants (file names, defaults, record timings).
//
// The roles below, the metrics' recording and the node's watchers are
// unexported: an application reaches them only through these.
//
// # The roles of a node
//
// A Node is the composition root of the roles it plays; each is a type of
// its own that implements the interface its user declares:
//
//   - locator (locator.go): the location service (draft §4.2, §4.3), the
//     sipbridge.Locator of the node's SIP bridge. It seals its users'
//     bindings, stores them in the domain overlay, re-stores them every
//     Config.RepublishInterval and when the node's addresses change, and
//     looks AORs up. Node.Register, Unregister and Lookup are its.
//   - router (router.go): the route out of the domain (draft §6.2, Figure
//     3), the sipbridge.ProxyResolver of the bridge. A proxy looks the target
//     domain's proxies up in the global overlay and caches them, keeping to
//     the chain of custody of their records; any other node sends to its own
//     domain's proxy, as its election announced it or as the domain overlay
//     names it.
//   - proxyDuties (duties.go) with globalMembership (global.go): a proxy's
//     duties, the election.Duties of its runner. Promoted, the node joins the
//     global overlay and publishes its domain's proxy record there and in the
//     domain overlay, with the endorsements the election holds; demoted, it
//     stops and leaves. The global overlay is created and closed under no
//     lock that readers need.
//   - the NAT watchers (natwatch.go, staleconns.go) follow the host's
//     addresses and connections; the host's NAT configuration is in nat.go,
//     the path diagnostics of /status in paths.go.
//
// The election (election.go) and the SIP bridge with its media relay
// (sip.go, media.go) are the services the node starts on its host.
//
// # Time
//
// Config.Clock (github.com/benbjohnson/clock, the type of go-libp2p's
// connection manager) is the node's one clock, handed to its overlays, its
// bootstrappers and its election runner: the times and sequence numbers of
// records, the validity of certificates, the re-stores, the election's ticks
// and the bootstrap rounds follow it. Network deadlines and measured
// latencies stay on the system clock, since the network runs in real time.
//
// # Enrolled domains and relaying
//
// With Config.Enrollment the node's domain is enrolled (package domains):
// Register attaches a certificate of the domain's authority covering the
// AOR, or fails with ErrNoCertificate (the SIP bridge answers 403); the node
// looks the domain's revocation list up every RefreshInterval, re-stores it
// with its bindings, and PublishRevocationList stores a new one. The node's
// SIP bridge relays inter-domain requests only for members of its domain.
//
// # Operating a node
//
// Node.Metrics holds the node's Prometheus metrics in a registry of its own
// (registrations, lookups and their latency per overlay, calls routed,
// election role changes and failovers, bootstrap events, routing tables and
// connections). NewAdminHandler serves /status (Node.Status as JSON),
// /metrics, /bootstrap (the domain's web-station list) and optionally
// /debug/pprof/; an application mounts it on its own server. Endpoints that
// change state (POST /disconnect) need the bearer token of WithAdminToken;
// the read-only ones are open to whoever reaches the listener, so it belongs
// on loopback or a trusted network. A bearer token cannot be sent by a web
// page on another origin without a CORS preflight, which the handler does not
// answer: a browser on the machine cannot be made to POST for a page.
//
// The hiersip daemon ("hiersip node") is package node/daemon: its settings
// (a YAML file, HIERSIP_ variables, flags) map onto Config, and it runs the
// node with its admin server. The library needs none of it.
package node
