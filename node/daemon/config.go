package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hiersip/hiersip/domains/enroll"
	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/internal/hostport"
	"github.com/hiersip/hiersip/mailbox"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/siptls"
)

// EnvPrefix prefixes the environment variables of the daemon's settings: a
// setting's variable is its key upper-cased with "." and "_" as "_", e.g.
// HIERSIP_SIP_UDP for sip.udp. Lists are comma-separated.
const EnvPrefix = "HIERSIP_"

// DefaultShutdownTimeout bounds Run's graceful shutdown.
const DefaultShutdownTimeout = 10 * time.Second

// Config is the configuration of the hiersip daemon: the settings of its
// YAML file (keys as in the koanf tags), environment variables and flags.
// Load reads it; NodeConfig maps it onto a node.Config.
type Config struct {
	Domain       string   `koanf:"domain" help:"the node's domain (its local overlay), e.g. pastry"`
	KnownDomains []string `koanf:"known_domains" help:"further domain names, to decide the domain of an AOR"`
	DataDir      string   `koanf:"data_dir" help:"directory of the identity key, the peer caches, admin.url and the SIP registrations"`
	ListenAddrs  []string `koanf:"listen_addrs" help:"libp2p listen multiaddrs"`
	Bootstrap    struct {
		MDNS        bool     `koanf:"mdns" help:"find the domain's peers on the LAN by mDNS"`
		Peers       []string `koanf:"peers" help:"multiaddrs (with /p2p/<id>) of the domain's well-known peers"`
		WebStations []string `koanf:"web_stations" help:"URLs of web stations that list the domain's peers"`
		Cache       bool     `koanf:"cache" help:"keep a peer cache in the data directory"`
	} `koanf:"bootstrap"`
	Global struct {
		Peers       []string `koanf:"peers" help:"multiaddrs of global-overlay seeds, joined when the node becomes proxy"`
		WebStations []string `koanf:"web_stations" help:"URLs of web stations of the global overlay"`
		MDNS        bool     `koanf:"mdns" help:"find global-overlay peers on the LAN by mDNS"`
		Cache       bool     `koanf:"cache" help:"keep a global-overlay peer cache in the data directory"`
	} `koanf:"global"`
	GlobalSeed bool `koanf:"global_seed" help:"stay in the global overlay whatever the role, as an entry point for other domains' proxies"`
	SIP        struct {
		UDP           string   `koanf:"udp" help:"UA-facing SIP UDP address (empty: none; both empty: no SIP)"`
		TCP           string   `koanf:"tcp" help:"UA-facing SIP TCP address (empty: none)"`
		TLS           string   `koanf:"tls" help:"UA-facing SIP over TLS address, e.g. 0.0.0.0:5061 (empty: none)"`
		WS            string   `koanf:"ws" help:"UA-facing SIP over WebSocket address (RFC 7118; empty: none)"`
		WSS           string   `koanf:"wss" help:"UA-facing SIP over secure WebSocket address, for browser phones (empty: none)"`
		TLSCert       string   `koanf:"tls_cert" help:"certificate file (PEM) of sip.tls and sip.wss (empty: a self-signed one in the data directory)"`
		TLSKey        string   `koanf:"tls_key" help:"key file (PEM) of sip.tls_cert"`
		TLSNames      []string `koanf:"tls_names" help:"DNS names and IPs of the self-signed certificate (empty: the host of sip.advertise, sip.tls, sip.wss, and localhost)"`
		TLSClientAuth string   `koanf:"tls_client_auth" help:"client certificates over TLS/WSS: none, request or require"`
		TLSCAFile     string   `koanf:"tls_ca_file" help:"CA file (PEM) that client certificates are checked against"`
		// Public maps onto sipbridge.WithPublic (sipedge.go).
		Public struct {
			UDP string `koanf:"udp" help:"public SIP address for ordinary SIP servers (what the domain's DNS SRV names), e.g. 0.0.0.0:5070: requests for this domain's users only (empty: none)"`
			TCP string `koanf:"tcp" help:"the same over TCP (empty: none)"`
			TLS string `koanf:"tls" help:"the same over TLS, with the certificate of sip.tls_cert (empty: none)"`
		} `koanf:"public"`
		// Outbound maps onto sipbridge.WithOutbound with a sipdns resolver (sipedge.go).
		Outbound struct {
			Enabled      bool          `koanf:"enabled" help:"as the domain's proxy, route calls to domains outside the overlay to their SIP servers found in DNS (RFC 3263)"`
			DNS          []string      `koanf:"dns" help:"DNS servers host[:port] to ask (empty: those of /etc/resolv.conf)"`
			Transports   []string      `koanf:"transports" help:"transports to reach ordinary SIP servers, preferred first: udp, tcp, tls (tls needs sip.tls or sip.public.tls)"`
			TLSCAFile    string        `koanf:"tls_ca_file" help:"CA file (PEM) that servers reached over TLS are verified against (empty: the system's roots); their certificate must name the SIP domain"`
			Allow        []string      `koanf:"allow" help:"domain suffixes calls may go to (empty: all that deny does not refuse)"`
			Deny         []string      `koanf:"deny" help:"domain suffixes calls may not go to (the longest matching suffix of allow and deny decides)"`
			Routes       []string      `koanf:"routes" help:"suffix=sip:URI: send calls for these domains to a fixed next hop instead of their DNS"`
			DenyInternal bool          `koanf:"deny_internal" help:"refuse servers at loopback, private and link-local addresses (a domain's DNS cannot point the proxy at its own network)"`
			TryTimeout   time.Duration `koanf:"try_timeout" help:"wait this long for any answer from one server before the next one (0: 3s)"`
		} `koanf:"outbound"`
		UsersFile      string        `koanf:"users_file" help:"users file: turns on digest authentication of local UAs"`
		MinExpires     time.Duration `koanf:"min_expires" help:"shortest registration accepted (0: the bridge's default)"`
		DefaultExpires time.Duration `koanf:"default_expires" help:"registration interval when a REGISTER names none (0: default)"`
		MaxExpires     time.Duration `koanf:"max_expires" help:"longest registration granted (0: default)"`
		Advertise      string        `koanf:"advertise" help:"host[:port] to write into Via, Record-Route and Contact, e.g. the public address of a server behind NAT (empty: the interface address towards each destination)"`
		NATKeepalive   time.Duration `koanf:"nat_keepalive" help:"interval of the OPTIONS keep-alives to registered phones behind NAT (0: none)"`
		// Abuse resistance (README "Limits and overload").
		TrustedNetworks  []string `koanf:"trusted_networks" help:"without users_file: CIDR prefixes whose UAs the node serves besides loopback"`
		DigestAlgorithms []string `koanf:"digest_algorithms" help:"digest challenges, preferred first: SHA-256, MD5 (empty: MD5 alone, as Kamailio; [SHA-256, MD5] for RFC 8760 phones)"`
		MaxContacts      int      `koanf:"max_contacts" help:"contacts of one AOR, and of one REGISTER (1 to 16)"`
		Limits           struct {
			SourceRate      float64       `koanf:"source_rate" help:"initial requests per second from one UA source IP (0: no limit)"`
			SourceBurst     int           `koanf:"source_burst" help:"burst of initial requests from one UA source IP"`
			PeerRate        float64       `koanf:"peer_rate" help:"initial requests per second from one node over /hiersip/sip/1.0.0 (0: no limit)"`
			PeerBurst       int           `koanf:"peer_burst" help:"burst of initial requests from one node"`
			DialogFactor    float64       `koanf:"dialog_factor" help:"ACKs, in-dialog requests and responses may come this many times faster"`
			AuthFailures    int           `koanf:"auth_failures" help:"wrong digest credentials checked per source IP and auth_window (0: no throttle)"`
			AuthWindow      time.Duration `koanf:"auth_window" help:"window of auth_failures"`
			MaxSourceTx     int           `koanf:"max_source_transactions" help:"concurrent transactions of one UA source IP"`
			MaxTransactions int           `koanf:"max_transactions" help:"concurrent transactions of all UAs together"`
			MaxPeerTx       int           `koanf:"max_peer_transactions" help:"concurrent transactions of one node"`
			MessageTimeout  time.Duration `koanf:"message_timeout" help:"a message must arrive whole this long after its first byte (TCP, streams)"`
			TCPIdleTimeout  time.Duration `koanf:"tcp_idle_timeout" help:"UA-facing TCP connections without message or keep-alive are closed after this"`
			StreamIdle      time.Duration `koanf:"stream_idle_timeout" help:"inbound /hiersip/sip/1.0.0 streams without a message are closed after this (same on every node)"`
			MaxTCPPerSource int           `koanf:"max_tcp_per_source" help:"UA-facing TCP connections of one source IP"`
			MaxTCP          int           `koanf:"max_tcp_connections" help:"UA-facing TCP connections in all (at most a quarter of RLIMIT_NOFILE)"`
			MaxStreamsPeer  int           `koanf:"max_streams_per_peer" help:"inbound /hiersip/sip/1.0.0 streams of one node"`
			MaxStreams      int           `koanf:"max_streams" help:"inbound /hiersip/sip/1.0.0 streams in all"`
		} `koanf:"limits"`
	} `koanf:"sip"`
	Election struct {
		Disable    bool    `koanf:"disable" help:"stay out of the proxy election"`
		OptOut     bool    `koanf:"opt_out" help:"take part in the election but never be proxy or candidate"`
		Weight     float64 `koanf:"weight" help:"operator weight of the node's utility (0: 1)"`
		Bandwidth  float64 `koanf:"bandwidth" help:"the node's bandwidth in bit/s (0: unknown)"`
		Proxies    int     `koanf:"proxies" help:"active proxies per domain (0: default 1)"`
		Candidates int     `koanf:"candidates" help:"length of the candidate list (0: default 2)"`
	} `koanf:"election"`
	Enrollment struct {
		Authority       string        `koanf:"authority" help:"the domain authority's public key (base64 from 'hiersip authority init', or its .pub file); empty: an open domain"`
		Certificates    []string      `koanf:"certificates" help:"files of the certificates issued to this node ('hiersip authority issue')"`
		RevocationList  string        `koanf:"revocation_list" help:"file of a revocation list to start with and publish ('hiersip authority revoke')"`
		RefreshInterval time.Duration `koanf:"refresh_interval" help:"how often to look the revocation list up (0: 1m)"`
	} `koanf:"enrollment"`
	// NAT maps onto node.NATConfig. Its reachability is the one source of truth
	// of the node's reachability: the host and the election both use it.
	NAT struct {
		Public        bool          `koanf:"public" help:"the node has a public address: serve as circuit relay and AutoNAT server"`
		Relays        []string      `koanf:"relays" help:"multiaddrs (with /p2p/<id>) of public relays to reserve a slot on"`
		AutoRelay     bool          `koanf:"auto_relay" help:"take relay reservations when not publicly reachable"`
		HolePunching  bool          `koanf:"hole_punching" help:"upgrade relayed connections to direct ones (DCUtR)"`
		PortMap       bool          `koanf:"port_map" help:"ask the NAT gateway for a port mapping (UPnP, NAT-PMP)"`
		Reachability  string        `koanf:"reachability" help:"force public or private reachability, for the host and the election (empty: AutoNAT, public with nat.public)"`
		RelayDuration time.Duration `koanf:"relay_duration" help:"time limit of each relayed connection through this node with nat.public (0: 1h)"`
		RelayData     int           `koanf:"relay_data" help:"bytes per direction of each relayed connection through this node with nat.public (0: 128 MiB)"`
	} `koanf:"nat"`
	// Media maps onto node.MediaConfig.
	Media struct {
		Enabled            bool          `koanf:"enabled" help:"anchor the media of calls with other nodes' phones here and carry it over libp2p"`
		Ports              string        `koanf:"ports" help:"UDP port range MIN-MAX of the phone-facing media sockets (two per stream)"`
		Address            string        `koanf:"address" help:"IP the media sockets bind to and phones are given (empty: the IP of sip.udp)"`
		MaxSessions        int           `koanf:"max_sessions" help:"media streams the node anchors at most (calls beyond get 503)"`
		MaxSessionsPerPeer int           `koanf:"max_sessions_per_peer" help:"media streams the calls of one other node may open here"`
		IdleTimeout        time.Duration `koanf:"idle_timeout" help:"close a media stream that carried no packet for this long"`
		HoldTimeout        time.Duration `koanf:"hold_timeout" help:"the same for a stream on hold"`
		MaxDelay           time.Duration `koanf:"max_delay" help:"drop RTP that waited longer than this for the other node"`
	} `koanf:"media"`
	// Mailbox maps onto node.MailboxConfig (issue 19: messages that wait).
	Mailbox struct {
		Enabled   bool          `koanf:"enabled" help:"keep MESSAGEs for users with no live device in the domain overlay and deliver them when a device registers"`
		Retention time.Duration `koanf:"retention" help:"how long a message this node stores waits for its recipient (at most 720h)"`
	} `koanf:"mailbox"`
	// Push maps onto node.PushConfig (issue 19: RFC 8599 push for sleeping phones).
	Push struct {
		GatewayURL string `koanf:"gateway_url" help:"push gateway URL (https, or http on loopback) that wakes phones registered with RFC 8599 push parameters (empty: none)"`
	} `koanf:"push"`
	Admin struct {
		Listen string `koanf:"listen" help:"admin HTTP address: /status, /metrics, /bootstrap (empty: none)"`
		Pprof  bool   `koanf:"pprof" help:"serve /debug/pprof/ on the admin address"`
		Web    bool   `koanf:"web" help:"serve the status page and the browser phone at /ui/ on the admin address (the phone registers over sip.wss)"`
	} `koanf:"admin"`
	Log struct {
		Level  string `koanf:"level" help:"log level: debug, info, warn or error"`
		Format string `koanf:"format" help:"log format: text or json"`
	} `koanf:"log"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout" help:"bound of the graceful shutdown"`

	// Logger, when set, replaces the logger built from Log (Run).
	Logger *slog.Logger `koanf:"-"`
	// LogLevel is the level of Logger that a reload sets from log.level
	// (NewLoggerLevel returns both); nil: a reload leaves the level alone.
	LogLevel *slog.LevelVar `koanf:"-"`
	// Reload, when set, asks the running daemon to reload (hiersip node
	// sends on it at SIGHUP): it reads the configuration again with
	// ReloadConfig and applies what can change while it runs — log.level
	// and the users of sip.users_file — and logs the changed settings that
	// need a restart. A reload never stops the node; a bad configuration is
	// logged and changes nothing.
	Reload <-chan struct{} `koanf:"-"`
	// ReloadConfig reads the configuration again (Load with the same file
	// and flags); nil: a reload re-reads the users file only.
	ReloadConfig func() (Config, error) `koanf:"-"`
}

// Defaults returns the daemon's defaults: mDNS and the peer
// cache on, SIP on 127.0.0.1:5060, admin on 127.0.0.1:8080, the data
// directory $XDG_DATA_HOME/hiersip (or ~/.local/share/hiersip).
func Defaults() Config {
	var c Config
	c.DataDir = DefaultDataDir()
	c.ListenAddrs = slices.Clone(node.DefaultListenAddrs)
	c.Bootstrap.MDNS, c.Bootstrap.Cache = true, true
	c.Global.MDNS, c.Global.Cache = true, true
	c.NAT.AutoRelay, c.NAT.HolePunching = true, true
	c.SIP.UDP, c.SIP.TCP = node.DefaultSIPListen, node.DefaultSIPListen
	c.SIP.Outbound.Transports = []string{"udp", "tcp"}
	c.SIP.Outbound.DenyInternal = true
	c.SIP.TLSClientAuth = string(siptls.ClientAuthNone)
	c.SIP.NATKeepalive = sipbridge.DefaultNATKeepalive
	l := sipbridge.DefaultLimits()
	c.SIP.Limits.SourceRate, c.SIP.Limits.SourceBurst = l.SourceRate, l.SourceBurst
	c.SIP.Limits.PeerRate, c.SIP.Limits.PeerBurst = l.PeerRate, l.PeerBurst
	c.SIP.Limits.DialogFactor = l.DialogFactor
	c.SIP.Limits.AuthFailures, c.SIP.Limits.AuthWindow = l.AuthFailures, l.AuthWindow
	c.SIP.Limits.MaxSourceTx, c.SIP.Limits.MaxTransactions = l.MaxSourceTx, l.MaxUATx
	c.SIP.Limits.MaxPeerTx = sipbridge.DefaultMaxTxPerPeer
	c.Media.Enabled, c.Media.Ports = true, fmt.Sprintf("%d-%d", media.DefaultPortMin, media.DefaultPortMax)
	c.Media.MaxSessions, c.Media.MaxSessionsPerPeer = media.DefaultMaxSessions, media.DefaultMaxSessionsPerPeer
	c.Media.IdleTimeout, c.Media.HoldTimeout = media.DefaultIdleTimeout, media.DefaultHoldTimeout
	c.Media.MaxDelay = media.DefaultMaxDelay
	c.Mailbox.Enabled, c.Mailbox.Retention = true, mailbox.DefaultRetention
	cl := sipbridge.DefaultConnLimits()
	c.SIP.Limits.MessageTimeout, c.SIP.Limits.TCPIdleTimeout, c.SIP.Limits.StreamIdle = cl.MessageTimeout, cl.TCPIdleTimeout, cl.StreamIdleTimeout
	c.SIP.Limits.MaxTCPPerSource, c.SIP.Limits.MaxTCP = cl.MaxTCPPerSource, cl.MaxTCP
	c.SIP.Limits.MaxStreamsPeer, c.SIP.Limits.MaxStreams = cl.MaxStreamsPerPeer, cl.MaxStreams
	c.SIP.MaxContacts = sipbridge.DefaultMaxContacts
	c.Admin.Listen = "127.0.0.1:8080"
	c.Log.Level, c.Log.Format = "info", "text"
	c.ShutdownTimeout = DefaultShutdownTimeout
	return c
}

// DefaultDataDir returns $XDG_DATA_HOME/hiersip, else ~/.local/share/hiersip,
// else "" (no home: an in-memory identity).
func DefaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "hiersip")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "hiersip")
	}
	return ""
}

// Validate checks every setting, returning a *node.ConfigError naming the
// first invalid one by its key.
func (c Config) Validate() error {
	_, err := c.NodeConfig()
	return err
}

// NodeConfig checks the settings and maps them onto a node.Config (Logger
// is c.Logger, or one built from Log on stderr). It checks here what only
// the daemon has (its own settings, text to parse, files to read: the users
// file is read once, and handed to the node as SIPConfig.Users) and leaves
// the rest to node.Config.Validate, which names the same keys. An invalid
// setting is a *node.ConfigError.
func (c Config) NodeConfig() (node.Config, error) {
	if c.Domain == "" {
		return node.Config{}, &node.ConfigError{Field: "domain", Err: errors.New("required (--domain, HIERSIP_DOMAIN or domain: in the file)")}
	}
	log := c.Logger
	if log == nil {
		var err error
		if log, err = c.NewLogger(os.Stderr); err != nil {
			return node.Config{}, err
		}
	} else if _, err := c.NewLogger(io.Discard); err != nil {
		return node.Config{}, err
	}
	if err := c.check(); err != nil {
		return node.Config{}, err
	}
	cfg := node.Config{
		Domain:       c.Domain,
		KnownDomains: slices.Clone(c.KnownDomains),
		DataDir:      c.DataDir,
		ListenAddrs:  slices.Clone(c.ListenAddrs),
		NAT: node.NATConfig{
			Public:              c.NAT.Public,
			Relays:              slices.Clone(c.NAT.Relays),
			DisableAutoRelay:    !c.NAT.AutoRelay,
			DisableHolePunching: !c.NAT.HolePunching,
			PortMap:             c.NAT.PortMap,
			ForceReachability:   c.NAT.Reachability,
			RelayDuration:       c.NAT.RelayDuration,
			RelayData:           int64(c.NAT.RelayData),
		},
		Bootstrap: node.BootstrapConfig{
			DisableMDNS:  !c.Bootstrap.MDNS,
			Peers:        slices.Clone(c.Bootstrap.Peers),
			WebStations:  slices.Clone(c.Bootstrap.WebStations),
			DisableCache: !c.Bootstrap.Cache,
		},
		Global: node.BootstrapConfig{
			DisableMDNS:  !c.Global.MDNS,
			Peers:        slices.Clone(c.Global.Peers),
			WebStations:  slices.Clone(c.Global.WebStations),
			DisableCache: !c.Global.Cache,
		},
		GlobalSeed: c.GlobalSeed,
		Election: node.ElectionConfig{
			// Reachability stays empty: the election follows NAT.ForceReachability.
			Disable: c.Election.Disable, OptOut: c.Election.OptOut, Weight: c.Election.Weight, Bandwidth: c.Election.Bandwidth,
			Config: election.Config{Proxies: c.Election.Proxies, Candidates: c.Election.Candidates},
		},
		Mailbox: node.MailboxConfig{Disable: !c.Mailbox.Enabled, Retention: c.Mailbox.Retention},
		Push:    node.PushConfig{GatewayURL: c.Push.GatewayURL},
		Logger:  log,
	}
	var err error
	if cfg.Media, err = c.mediaConfig(); err != nil {
		return node.Config{}, err
	}
	if cfg.SIP, err = c.sipConfig(); err != nil {
		return node.Config{}, err
	}
	if cfg.Enrollment, err = c.enrollmentConfig(); err != nil {
		return node.Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return node.Config{}, err
	}
	return cfg, nil
}

// check checks the settings only the daemon has.
func (c Config) check() error {
	if err := hostport.Check(c.Admin.Listen); err != nil {
		return &node.ConfigError{Field: "admin.listen", Err: err}
	}
	if c.ShutdownTimeout <= 0 {
		return &node.ConfigError{Field: "shutdown_timeout", Err: fmt.Errorf("%v: want a positive duration", c.ShutdownTimeout)}
	}
	if len(c.ListenAddrs) == 0 {
		return &node.ConfigError{Field: "listen_addrs", Err: errors.New("empty")}
	}
	return nil
}

// NewLogger returns the logger the Log settings describe, writing to w.
func (c Config) NewLogger(w io.Writer) (*slog.Logger, error) {
	l, _, err := c.NewLoggerLevel(w)
	return l, err
}

// NewLoggerLevel returns the logger the Log settings describe, writing to
// w, and its level, which can be changed while it runs (Config.LogLevel).
func (c Config) NewLoggerLevel(w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	level, err := c.level()
	if err != nil {
		return nil, nil, err
	}
	lv := new(slog.LevelVar)
	lv.Set(level)
	opts := &slog.HandlerOptions{Level: lv}
	switch c.Log.Format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), lv, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
	}
	return nil, nil, &node.ConfigError{Field: "log.format", Err: fmt.Errorf("%q: want text or json", c.Log.Format)}
}

func (c Config) level() (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return 0, &node.ConfigError{Field: "log.level", Err: fmt.Errorf("%q: want debug, info, warn or error", c.Log.Level)}
	}
	return level, nil
}

// mediaConfig maps the media settings onto a node.MediaConfig; node.Config
// checks the values.
func (c Config) mediaConfig() (node.MediaConfig, error) {
	m := c.Media
	mc := node.MediaConfig{Disable: !m.Enabled, Address: m.Address, MaxSessions: m.MaxSessions, MaxSessionsPerPeer: m.MaxSessionsPerPeer,
		IdleTimeout: m.IdleTimeout, HoldTimeout: m.HoldTimeout, MaxDelay: m.MaxDelay}
	if !m.Enabled {
		return mc, nil
	}
	lo, hi, err := parsePortRange(m.Ports)
	if err != nil {
		return mc, &node.ConfigError{Field: "media.ports", Err: err}
	}
	mc.PortMin, mc.PortMax = lo, hi
	// In the file 0 is no default: the defaults are written out.
	for _, v := range []struct {
		field string
		n     int
	}{{"media.max_sessions", m.MaxSessions}, {"media.max_sessions_per_peer", m.MaxSessionsPerPeer}} {
		if v.n < 1 {
			return mc, &node.ConfigError{Field: v.field, Err: fmt.Errorf("%d: want at least 1", v.n)}
		}
	}
	return mc, nil
}

// parsePortRange parses "10000-20000".
func parsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX, e.g. 10000-20000", s)
	}
	if lo, err = strconv.Atoi(strings.TrimSpace(a)); err == nil {
		hi, err = strconv.Atoi(strings.TrimSpace(b))
	}
	if err != nil || lo < 1 || hi > 65535 || hi < lo+1 {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX within 1-65535 with at least two ports", s)
	}
	return lo, hi, nil
}

// enrollmentConfig reads the enrollment files into a node.EnrollmentConfig
// (nil: an open domain); node.Config checks their content.
func (c Config) enrollmentConfig() (*node.EnrollmentConfig, error) {
	en := c.Enrollment
	if en.Authority == "" {
		switch {
		case len(en.Certificates) > 0:
			return nil, &node.ConfigError{Field: "enrollment.certificates", Err: errors.New("set without enrollment.authority")}
		case en.RevocationList != "":
			return nil, &node.ConfigError{Field: "enrollment.revocation_list", Err: errors.New("set without enrollment.authority")}
		}
		return nil, nil
	}
	pub, err := enroll.ParsePublicKey(en.Authority)
	if err != nil {
		return nil, &node.ConfigError{Field: "enrollment.authority", Err: err}
	}
	ec := &node.EnrollmentConfig{Authority: pub, RefreshInterval: en.RefreshInterval}
	for i, f := range en.Certificates {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, &node.ConfigError{Field: fmt.Sprintf("enrollment.certificates[%d]", i), Err: err}
		}
		ec.Certificates = append(ec.Certificates, data)
	}
	if en.RevocationList != "" {
		data, err := os.ReadFile(en.RevocationList)
		if err != nil {
			return nil, &node.ConfigError{Field: "enrollment.revocation_list", Err: err}
		}
		ec.RevocationList = data
	}
	return ec, nil
}
