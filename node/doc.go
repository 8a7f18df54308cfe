// Package node is a hiersip node: a libp2p host that is a member of one
// domain overlay, registers the AORs of its users there as signed binding
// records, re-stores them before they expire, and looks AORs up.
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
// peers, a peer cache in its data directory and web stations (draft §4.1;
// see Config.Bootstrap), and keeps trying them with backoff while it is
// alone. Joined is closed once its routing table has a peer. Ready (and
// WaitReady) say when the node routes calls: in its domain once it has
// joined, or once it has tried every bootstrap source it was given (a lone
// node); to other domains once it also knows a way out (a proxy of its
// domain, or as a serving proxy, a peer in the global overlay).
//
// A node logs nowhere unless Config.Logger is set. New and NewWithHost lock
// the data directory (LockFile, with the process ID) until Close, so that
// two nodes never share an identity; a failed start returns an error naming
// its cause (a busy SIP port is a *ConfigError of sip.udp or sip.tcp).
//
// # Enrolled domains and relaying
//
// With Config.Enrollment the node's domain is enrolled (package domains):
// Register attaches a certificate of the domain's authority covering the
// AOR, or fails with ErrNoCertificate (the SIP bridge answers 403); the node
// looks the domain's revocation list up every RefreshInterval, re-stores it
// with its bindings, and PublishRevocationList stores a new one. The node's
// SIP bridge relays inter-domain requests only for members (IsMember).
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
// The hiersip daemon (cmd/hiersip, "hiersip node") is RunDaemon: its
// DaemonConfig comes from LoadDaemonConfig (defaults, a YAML file such as
// hiersip.example.yaml, HIERSIP_ environment variables, flags added by
// AddDaemonFlags) and maps onto Config with NodeConfig. While it runs it
// writes admin.url and a fresh admin.token (mode 0600) to the data
// directory; DaemonConfig.Reload (SIGHUP) re-reads the users file and the
// log level.
package node
