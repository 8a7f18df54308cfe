// Package daemon is the hiersip daemon ("hiersip node"): a node of package
// node, configured by the settings of a YAML file such as
// hiersip.example.yaml, HIERSIP_ environment variables and flags, with an
// admin server, run until it is told to stop. It is a composition of the
// library, not a part of it: an application that embeds a node uses
// node.Config and never needs this package.
//
//	fs := pflag.NewFlagSet("node", pflag.ContinueOnError)
//	daemon.AddFlags(fs)               // --sip-udp for sip.udp, …
//	_ = fs.Parse(os.Args[1:])
//	c, err := daemon.Load(path, fs)   // defaults < file < environment < flags
//	if err != nil { ... }             // a *node.ConfigError naming the key
//	err = c.Validate()                // hiersip node --check
//	err = daemon.Run(ctx, c)          // until ctx ends: graceful shutdown
//
// # Settings
//
// Config holds every setting under the key users write ("sip.udp",
// "nat.relays"); a reflection walker over its koanf tags gives each its
// flag (--sip-udp) and variable (HIERSIP_SIP_UDP), rejects unknown keys and
// writes the effective settings back as YAML (WriteSettings). NodeConfig
// maps them onto a node.Config: it checks what only the daemon has (its
// log, admin and shutdown settings, text such as port ranges, files to
// read) and leaves every other check to node.Config.Validate, so each
// setting is checked once, and every error is a *node.ConfigError keyed by
// the setting's name. The users file is read once, for its digest
// credentials and its user keys, and handed to the node (SIPConfig.Users).
//
// # Running
//
// Run starts the node with the Prometheus collectors of the process, serves
// node.NewAdminHandler on admin.listen, writes admin.url and a fresh
// admin.token (mode 0600) to the data directory while it runs, and shuts
// the node down within shutdown_timeout when its context ends. On a reload
// (Config.Reload, SIGHUP for hiersip node) it reads the configuration
// again, sets log.level, swaps the users of the users file (Users.Replace),
// and logs the changed settings that need a restart; a bad configuration is
// logged and changes nothing.
//
// # Who may do what
//
// The admin server is for loopback or a trusted network: /status, /metrics
// and /bootstrap are open to whoever reaches it (Run warns when it listens
// beyond loopback); POST /disconnect needs the bearer token of admin.token,
// which only the node's user can read. A page in a browser cannot send the
// token to another origin without a CORS preflight, which the server does
// not answer.
package daemon
