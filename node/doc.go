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
//	<-n.Joined()
//	bob, _ := n.ParseAOR("sip:bob@bupt.pastry")
//	err = n.Register(ctx, bob, []domains.Contact{{URI: "sip:bob@127.0.0.1:5062", Expires: time.Now().Add(time.Hour)}})
//	b, err := n.Lookup(ctx, bob) // from any node of the domain
//
// The node finds its domain's peers by mDNS on the LAN, pre-configured
// peers, a peer cache in its data directory and web stations (draft §4.1;
// see Config.Bootstrap), and keeps trying them with backoff while it is
// alone. Joined is closed once its routing table has a peer.
//
// # Operating a node
//
// Node.Metrics holds the node's Prometheus metrics in a registry of its own
// (registrations, lookups and their latency per overlay, calls routed,
// election role changes and failovers, bootstrap events, routing tables and
// connections). NewAdminHandler serves /status (Node.Status as JSON),
// /metrics, /bootstrap (the domain's web-station list) and optionally
// /debug/pprof/; an application mounts it on its own server.
//
// The hiersip daemon (cmd/hiersip, "hiersip node") is RunDaemon: its
// DaemonConfig comes from LoadDaemonConfig (defaults, a YAML file such as
// hiersip.example.yaml, HIERSIP_ environment variables, flags added by
// AddDaemonFlags) and maps onto Config with NodeConfig.
package node
