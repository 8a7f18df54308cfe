package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hiersip/hiersip/domains/enroll"
	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"
)

// EnvPrefix prefixes the environment variables of the daemon's settings: a
// setting's variable is its key upper-cased with "." and "_" as "_", e.g.
// HIERSIP_SIP_UDP for sip.udp. Lists are comma-separated.
const EnvPrefix = "HIERSIP_"

// AdminURLFile is the file in the data directory where RunDaemon writes the
// URL of its admin endpoint while it runs.
const AdminURLFile = "admin.url"

// AdminTokenFile is the file in the data directory where RunDaemon writes
// the token of the admin endpoints that change state (mode 0600, a new one
// at each start; see WithAdminToken).
const AdminTokenFile = "admin.token"

// DefaultShutdownTimeout bounds RunDaemon's graceful shutdown.
const DefaultShutdownTimeout = 10 * time.Second

// DaemonConfig is the configuration of the hiersip daemon: the settings of
// its YAML file (keys as in the koanf tags), environment variables and
// flags. LoadDaemonConfig reads it; NodeConfig maps it onto Config.
type DaemonConfig struct {
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
		UDP            string        `koanf:"udp" help:"UA-facing SIP UDP address (empty: none; both empty: no SIP)"`
		TCP            string        `koanf:"tcp" help:"UA-facing SIP TCP address (empty: none)"`
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
	// NAT maps onto NATConfig. Its reachability is the one source of truth
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
	// Media maps onto MediaConfig (media.go).
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
	Admin struct {
		Listen string `koanf:"listen" help:"admin HTTP address: /status, /metrics, /bootstrap (empty: none)"`
		Pprof  bool   `koanf:"pprof" help:"serve /debug/pprof/ on the admin address"`
	} `koanf:"admin"`
	Log struct {
		Level  string `koanf:"level" help:"log level: debug, info, warn or error"`
		Format string `koanf:"format" help:"log format: text or json"`
	} `koanf:"log"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout" help:"bound of the graceful shutdown"`

	// Logger, when set, replaces the logger built from Log (RunDaemon).
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
	// ReloadConfig reads the configuration again (LoadDaemonConfig with the
	// same file and flags); nil: a reload re-reads the users file only.
	ReloadConfig func() (DaemonConfig, error) `koanf:"-"`
}

// DefaultDaemonConfig returns the daemon's defaults: mDNS and the peer
// cache on, SIP on 127.0.0.1:5060, admin on 127.0.0.1:8080, the data
// directory $XDG_DATA_HOME/hiersip (or ~/.local/share/hiersip).
func DefaultDaemonConfig() DaemonConfig {
	var c DaemonConfig
	c.DataDir = DefaultDataDir()
	c.ListenAddrs = slices.Clone(DefaultListenAddrs)
	c.Bootstrap.MDNS, c.Bootstrap.Cache = true, true
	c.Global.MDNS, c.Global.Cache = true, true
	c.NAT.AutoRelay, c.NAT.HolePunching = true, true
	c.SIP.UDP, c.SIP.TCP = DefaultSIPListen, DefaultSIPListen
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

// DaemonConfigError reports an invalid setting, naming its key.
type DaemonConfigError struct {
	Field string
	Err   error
}

func (e *DaemonConfigError) Error() string { return "config: " + e.Field + ": " + e.Err.Error() }
func (e *DaemonConfigError) Unwrap() error { return e.Err }

// daemonField is one setting of DaemonConfig.
type daemonField struct {
	key   string // "sip.udp"
	help  string
	index []int
	typ   reflect.Type
}

var durationType = reflect.TypeFor[time.Duration]()

// daemonFields lists the settings of DaemonConfig and its section keys.
func daemonFields() (fields []daemonField, sections map[string]bool) {
	sections = map[string]bool{}
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			idx := append(slices.Clone(index), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				sections[key] = true
				walk(f.Type, key+".", idx)
				continue
			}
			fields = append(fields, daemonField{key: key, help: f.Tag.Get("help"), index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeFor[DaemonConfig](), "", nil)
	return fields, sections
}

// flagName is the command-line flag of a setting: "sip.users_file" is
// --sip-users-file.
func flagName(key string) string { return strings.NewReplacer(".", "-", "_", "-").Replace(key) }

// envName is the environment variable of a setting: HIERSIP_SIP_USERS_FILE.
func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// AddDaemonFlags adds a flag for every setting of DaemonConfig to fs, named
// after its key ("sip.udp" is --sip-udp), with the default shown.
func AddDaemonFlags(fs *pflag.FlagSet) {
	def := reflect.ValueOf(DefaultDaemonConfig())
	fields, _ := daemonFields()
	for _, f := range fields {
		name, v := flagName(f.key), def.FieldByIndex(f.index)
		help := f.help + " (" + f.key + ")"
		switch {
		case f.typ == durationType:
			fs.Duration(name, time.Duration(v.Int()), help)
		case f.typ.Kind() == reflect.String:
			fs.String(name, v.String(), help)
		case f.typ.Kind() == reflect.Bool:
			fs.Bool(name, v.Bool(), help)
		case f.typ.Kind() == reflect.Int:
			fs.Int(name, int(v.Int()), help)
		case f.typ.Kind() == reflect.Float64:
			fs.Float64(name, v.Float(), help)
		case f.typ.Kind() == reflect.Slice:
			fs.StringSlice(name, v.Interface().([]string), help)
		default:
			panic("node: daemon setting of unsupported type " + f.typ.String())
		}
	}
}

// LoadDaemonConfig reads the daemon's configuration: defaults
// (DefaultDaemonConfig), then the YAML file at path (if path is not empty),
// then HIERSIP_… environment variables, then the flags of flags that were
// set on the command line (see AddDaemonFlags; flags may be nil). An invalid
// or unknown setting is a *DaemonConfigError naming its key. The result is
// not validated further: NodeConfig does that.
func LoadDaemonConfig(path string, flags *pflag.FlagSet) (DaemonConfig, error) {
	c := DefaultDaemonConfig()
	fields, sections := daemonFields()
	byKey := map[string]daemonField{}
	byEnv := map[string]string{}
	byFlag := map[string]string{}
	for _, f := range fields {
		byKey[f.key] = f
		byEnv[envName(f.key)] = f.key
		byFlag[flagName(f.key)] = f.key
	}
	k := koanf.New(".")
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return c, fmt.Errorf("config: %s: %w", path, err)
		}
		if err := checkKeys(k, byKey, sections); err != nil {
			return c, err
		}
	}
	var unknownEnv []string
	err := k.Load(env.ProviderWithValue(EnvPrefix, ".", func(name, value string) (string, any) {
		key, ok := byEnv[name]
		if !ok {
			if name != EnvPrefix+"CONFIG" {
				unknownEnv = append(unknownEnv, name)
			}
			return "", nil
		}
		return key, value
	}), nil)
	if err != nil {
		return c, fmt.Errorf("config: environment: %w", err)
	}
	if len(unknownEnv) > 0 {
		slices.Sort(unknownEnv)
		return c, &DaemonConfigError{unknownEnv[0], errors.New("unknown setting in the environment")}
	}
	if flags != nil {
		err := k.Load(posflag.ProviderWithFlag(flags, ".", nil, func(f *pflag.Flag) (string, any) {
			key, ok := byFlag[f.Name]
			if !ok {
				return "", nil
			}
			if f.Value.Type() == "stringSlice" {
				v, _ := flags.GetStringSlice(f.Name)
				return key, v
			}
			return key, f.Value.String()
		}), nil)
		if err != nil {
			return c, fmt.Errorf("config: flags: %w", err)
		}
	}
	v := reflect.ValueOf(&c).Elem()
	for _, f := range fields {
		if !k.Exists(f.key) {
			continue
		}
		if err := setField(v.FieldByIndex(f.index), k.Get(f.key)); err != nil {
			return c, &DaemonConfigError{f.key, err}
		}
	}
	return c, nil
}

// WriteSettings writes every setting of c as YAML, in the layout of
// hiersip.example.yaml: a file hiersip node can read back.
func (c DaemonConfig) WriteSettings(w io.Writer) error {
	fields, _ := daemonFields()
	v := reflect.ValueOf(c)
	var open []string // the sections of the previous line
	var b strings.Builder
	for _, f := range fields {
		parts := strings.Split(f.key, ".")
		sections := parts[:len(parts)-1]
		common := 0
		for common < len(open) && common < len(sections) && open[common] == sections[common] {
			common++
		}
		for i := common; i < len(sections); i++ {
			fmt.Fprintf(&b, "%s%s:\n", strings.Repeat("  ", i), sections[i])
		}
		open = sections
		fv := v.FieldByIndex(f.index)
		var val any = fv.Interface()
		if f.typ == durationType {
			val = time.Duration(fv.Int()).String()
		}
		if f.typ.Kind() == reflect.Slice && fv.Len() == 0 {
			val = []string{}
		}
		js, err := json.Marshal(val) // JSON scalars and lists are YAML
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s%s: %s\n", strings.Repeat("  ", len(sections)), parts[len(parts)-1], js)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// checkKeys rejects keys of the file that are not settings.
func checkKeys(k *koanf.Koanf, byKey map[string]daemonField, sections map[string]bool) error {
	keys := k.Keys()
	slices.Sort(keys)
	for _, key := range keys {
		if _, ok := byKey[key]; ok {
			continue
		}
		if sections[key] {
			switch v := k.Get(key).(type) {
			case nil:
				continue
			case map[string]any:
				if len(v) == 0 {
					continue
				}
			}
			return &DaemonConfigError{key, errors.New("want a mapping of settings")}
		}
		if to, ok := movedKeys[key]; ok {
			return &DaemonConfigError{key, fmt.Errorf("moved to %s", to)}
		}
		return &DaemonConfigError{key, errors.New("unknown setting")}
	}
	return nil
}

// movedKeys are settings of earlier versions and their new keys.
var movedKeys = map[string]string{
	// One reachability for the host and the election.
	"election.reachability": "nat.reachability",
}

// setField sets a setting from a value of the file (YAML types), the
// environment (strings) or a flag (strings, string slices).
func setField(v reflect.Value, raw any) error {
	if raw == nil {
		v.SetZero()
		return nil
	}
	str, isStr := raw.(string)
	switch {
	case v.Type() == durationType:
		switch x := raw.(type) {
		case string:
			if secs, err := strconv.ParseFloat(x, 64); err == nil {
				v.SetInt(int64(secs * float64(time.Second)))
				return nil
			}
			d, err := time.ParseDuration(x)
			if err != nil {
				return fmt.Errorf("%q: invalid duration (want e.g. 30s, 5m)", x)
			}
			v.SetInt(int64(d))
		case int, int64, float64:
			n, _ := strconv.ParseFloat(fmt.Sprint(x), 64)
			v.SetInt(int64(n * float64(time.Second))) // plain numbers are seconds
		default:
			return fmt.Errorf("%v: want a duration", raw)
		}
	case v.Kind() == reflect.String:
		switch raw.(type) {
		case string, int, int64, float64, bool:
			v.SetString(fmt.Sprint(raw))
		default:
			return fmt.Errorf("%v: want a string", raw)
		}
	case v.Kind() == reflect.Bool:
		if b, ok := raw.(bool); ok {
			v.SetBool(b)
			return nil
		}
		b, err := strconv.ParseBool(str)
		if !isStr || err != nil {
			return fmt.Errorf("%q: want true or false", fmt.Sprint(raw))
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		s := fmt.Sprint(raw)
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q: want an integer", s)
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Float64:
		s := fmt.Sprint(raw)
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q: want a number", s)
		}
		v.SetFloat(x)
	case v.Kind() == reflect.Slice:
		var out []string
		switch x := raw.(type) {
		case string:
			for _, p := range strings.Split(x, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
		case []string:
			out = x
		case []any:
			for i, e := range x {
				switch e.(type) {
				case string, int, int64, float64:
					out = append(out, fmt.Sprint(e))
				default:
					return fmt.Errorf("[%d]: %v: want a string", i, e)
				}
			}
		default:
			return fmt.Errorf("%v: want a list", raw)
		}
		if len(out) == 0 {
			out = nil
		}
		v.Set(reflect.ValueOf(out))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

// NewLogger returns the logger the Log settings describe, writing to w.
func (c DaemonConfig) NewLogger(w io.Writer) (*slog.Logger, error) {
	l, _, err := c.NewLoggerLevel(w)
	return l, err
}

// NewLoggerLevel returns the logger the Log settings describe, writing to
// w, and its level, which can be changed while it runs (DaemonConfig.LogLevel).
func (c DaemonConfig) NewLoggerLevel(w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
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
	return nil, nil, &DaemonConfigError{"log.format", fmt.Errorf("%q: want text or json", c.Log.Format)}
}

func (c DaemonConfig) level() (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return 0, &DaemonConfigError{"log.level", fmt.Errorf("%q: want debug, info, warn or error", c.Log.Level)}
	}
	return level, nil
}

// Validate checks every setting, returning a *DaemonConfigError naming the
// first invalid one.
func (c DaemonConfig) Validate() error {
	_, err := c.NodeConfig()
	return err
}

// NodeConfig checks the settings and maps them onto a node Config (Logger
// is c.Logger, or one built from Log on stderr). An invalid setting is a
// *DaemonConfigError naming its key.
func (c DaemonConfig) NodeConfig() (Config, error) {
	if c.Domain == "" {
		return Config{}, &DaemonConfigError{"domain", errors.New("required (--domain, HIERSIP_DOMAIN or domain: in the file)")}
	}
	log := c.Logger
	if log == nil {
		var err error
		if log, err = c.NewLogger(os.Stderr); err != nil {
			return Config{}, err
		}
	} else if _, err := c.NewLogger(io.Discard); err != nil {
		return Config{}, err
	}
	for _, a := range []struct{ field, addr string }{
		{"sip.udp", c.SIP.UDP}, {"sip.tcp", c.SIP.TCP}, {"admin.listen", c.Admin.Listen},
	} {
		if err := checkHostPort(a.field, a.addr); err != nil {
			var ce *ConfigError
			errors.As(err, &ce)
			return Config{}, &DaemonConfigError{ce.Field, ce.Err}
		}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"sip.min_expires", c.SIP.MinExpires}, {"sip.default_expires", c.SIP.DefaultExpires}, {"sip.max_expires", c.SIP.MaxExpires}} {
		if d.v < 0 {
			return Config{}, &DaemonConfigError{d.field, fmt.Errorf("%v is negative", d.v)}
		}
	}
	if c.SIP.NATKeepalive < 0 {
		return Config{}, &DaemonConfigError{"sip.nat_keepalive", fmt.Errorf("%v is negative", c.SIP.NATKeepalive)}
	}
	if err := sipbridge.ValidateAdvertise(c.SIP.Advertise); err != nil {
		return Config{}, &DaemonConfigError{"sip.advertise", err}
	}
	if mn, mx := c.SIP.MinExpires, c.SIP.MaxExpires; mn != 0 && mx != 0 && mn > mx {
		return Config{}, &DaemonConfigError{"sip.max_expires", fmt.Errorf("%v is below sip.min_expires %v", mx, mn)}
	}
	if d := c.SIP.DefaultExpires; d != 0 && (d < c.SIP.MinExpires || (c.SIP.MaxExpires != 0 && d > c.SIP.MaxExpires)) {
		return Config{}, &DaemonConfigError{"sip.default_expires", fmt.Errorf("%v is outside [sip.min_expires, sip.max_expires]", d)}
	}
	dl := c.SIP.Limits
	limits := sipbridge.Limits{
		SourceRate: dl.SourceRate, SourceBurst: dl.SourceBurst, PeerRate: dl.PeerRate, PeerBurst: dl.PeerBurst,
		DialogFactor: dl.DialogFactor, AuthFailures: dl.AuthFailures, AuthWindow: dl.AuthWindow,
		MaxSourceTx: dl.MaxSourceTx, MaxUATx: dl.MaxTransactions,
	}
	if err := limits.Validate(); err != nil {
		return Config{}, &DaemonConfigError{"sip.limits", err}
	}
	if dl.MaxPeerTx < 1 {
		return Config{}, &DaemonConfigError{"sip.limits.max_peer_transactions", fmt.Errorf("%d: want at least 1", dl.MaxPeerTx)}
	}
	abuseOpts, aerr := c.sipAbuseOptions() // sipabuse.go
	if aerr != nil {
		return Config{}, aerr
	}
	var users *Users
	if c.SIP.UsersFile != "" {
		var err error
		if users, err = LoadUsers(c.SIP.UsersFile); err != nil {
			return Config{}, &DaemonConfigError{"sip.users_file", err}
		}
	}
	e := c.Election
	switch {
	case e.Weight < 0:
		return Config{}, &DaemonConfigError{"election.weight", fmt.Errorf("%v is negative", e.Weight)}
	case e.Bandwidth < 0:
		return Config{}, &DaemonConfigError{"election.bandwidth", fmt.Errorf("%v is negative", e.Bandwidth)}
	case e.Proxies < 0:
		return Config{}, &DaemonConfigError{"election.proxies", fmt.Errorf("%d is negative", e.Proxies)}
	case e.Candidates < 0:
		return Config{}, &DaemonConfigError{"election.candidates", fmt.Errorf("%d is negative", e.Candidates)}
	}
	switch nat := c.NAT; {
	case nat.Reachability != "" && nat.Reachability != "public" && nat.Reachability != "private":
		return Config{}, &DaemonConfigError{"nat.reachability", fmt.Errorf("%q: want public, private or empty", nat.Reachability)}
	case nat.RelayDuration < 0:
		return Config{}, &DaemonConfigError{"nat.relay_duration", fmt.Errorf("%v is negative", nat.RelayDuration)}
	case nat.RelayData < 0:
		return Config{}, &DaemonConfigError{"nat.relay_data", fmt.Errorf("%d is negative", nat.RelayData)}
	}
	if c.ShutdownTimeout <= 0 {
		return Config{}, &DaemonConfigError{"shutdown_timeout", fmt.Errorf("%v: want a positive duration", c.ShutdownTimeout)}
	}
	cfg := Config{
		Domain:       c.Domain,
		KnownDomains: slices.Clone(c.KnownDomains),
		DataDir:      c.DataDir,
		ListenAddrs:  slices.Clone(c.ListenAddrs),
		NAT: NATConfig{
			Public:              c.NAT.Public,
			Relays:              slices.Clone(c.NAT.Relays),
			DisableAutoRelay:    !c.NAT.AutoRelay,
			DisableHolePunching: !c.NAT.HolePunching,
			PortMap:             c.NAT.PortMap,
			ForceReachability:   c.NAT.Reachability,
			RelayDuration:       c.NAT.RelayDuration,
			RelayData:           int64(c.NAT.RelayData),
		},
		Bootstrap: BootstrapConfig{
			DisableMDNS:  !c.Bootstrap.MDNS,
			Peers:        slices.Clone(c.Bootstrap.Peers),
			WebStations:  slices.Clone(c.Bootstrap.WebStations),
			DisableCache: !c.Bootstrap.Cache,
		},
		Global: BootstrapConfig{
			DisableMDNS:  !c.Global.MDNS,
			Peers:        slices.Clone(c.Global.Peers),
			WebStations:  slices.Clone(c.Global.WebStations),
			DisableCache: !c.Global.Cache,
		},
		GlobalSeed: c.GlobalSeed,
		Election: ElectionConfig{
			// Reachability stays empty: the election follows NAT.ForceReachability.
			Disable: e.Disable, OptOut: e.OptOut, Weight: e.Weight, Bandwidth: e.Bandwidth,
			Config: election.Config{Proxies: e.Proxies, Candidates: e.Candidates},
		},
		Logger: log,
	}
	if len(cfg.ListenAddrs) == 0 {
		return Config{}, &DaemonConfigError{"listen_addrs", errors.New("empty")}
	}
	if err := c.mediaConfig(&cfg); err != nil {
		return Config{}, err
	}
	if c.SIP.UDP != "" || c.SIP.TCP != "" {
		cfg.SIP = &SIPConfig{
			UDP: c.SIP.UDP, TCP: c.SIP.TCP, UsersFile: c.SIP.UsersFile, Users: users,
			MinExpires: c.SIP.MinExpires, DefaultExpires: c.SIP.DefaultExpires, MaxExpires: c.SIP.MaxExpires,
			Limits:    &limits,
			Advertise: c.SIP.Advertise,
			Options:   append([]sipbridge.Option{sipbridge.WithMaxTransactionsPerPeer(dl.MaxPeerTx)}, abuseOpts...),
		}
		cfg.SIP.NATKeepalive = c.SIP.NATKeepalive
		if cfg.SIP.NATKeepalive == 0 {
			cfg.SIP.NATKeepalive = -1 // sip.nat_keepalive: 0 turns the keep-alives off
		}
	}
	_, err := cfg.NAT.validate()
	if err == nil {
		err = c.enrollmentConfig(&cfg)
	}
	if err == nil {
		_, err = cfg.withDefaults()
	}
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return Config{}, &DaemonConfigError{ce.Field, ce.Err}
		}
		return Config{}, err
	}
	return cfg, nil
}

// RunDaemon runs a node as c configures it, with its admin endpoint, until
// ctx is done; then it shuts the node down gracefully (Close: proxy
// handoff, peer cache saved) within c.ShutdownTimeout. It logs "admin
// listening on http://…" and writes that URL to AdminURLFile in the data
// directory while it runs. It returns nil after a clean shutdown.
func RunDaemon(ctx context.Context, c DaemonConfig) error {
	if c.Logger == nil {
		var err error
		if c.Logger, c.LogLevel, err = c.NewLoggerLevel(os.Stderr); err != nil {
			return err
		}
	}
	cfg, err := c.NodeConfig()
	if err != nil {
		return err
	}
	log := cfg.Logger
	if c.DataDir != "" {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return &DaemonConfigError{"data_dir", err}
		}
	}
	cfg.Metrics = NewMetrics()
	cfg.Metrics.Registry().MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	var (
		srv     *http.Server
		srvDone = make(chan struct{})
		files   []string // admin.url and admin.token, removed at exit
	)
	if c.Admin.Listen != "" {
		ln, err := net.Listen("tcp", c.Admin.Listen)
		if err != nil {
			return errors.Join(&DaemonConfigError{"admin.listen", err}, n.Close())
		}
		var tok [32]byte
		_, _ = rand.Read(tok[:])
		token := hex.EncodeToString(tok[:])
		if c.DataDir != "" {
			f := filepath.Join(c.DataDir, AdminTokenFile)
			if err := writePrivate(f, token+"\n"); err != nil {
				return errors.Join(fmt.Errorf("daemon: admin token: %w", err), ln.Close(), n.Close())
			}
			files = append(files, f)
		} else {
			log.Warn("no data_dir: the admin token is not written anywhere, POST endpoints cannot be used")
		}
		if host, _, _ := net.SplitHostPort(ln.Addr().String()); !isLoopback(host) {
			log.Warn("admin endpoint beyond loopback: /status, /metrics and /bootstrap are readable by anyone who reaches it (POST endpoints need the token)", "addr", ln.Addr().String())
		}
		srv = &http.Server{
			Handler:           NewAdminHandler(n, WithPprof(c.Admin.Pprof), WithAdminToken(token)),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		go func() {
			defer close(srvDone)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server", "err", err)
			}
		}()
		url := "http://" + ln.Addr().String()
		log.Info("admin listening on " + url)
		if c.DataDir != "" {
			urlFile := filepath.Join(c.DataDir, AdminURLFile)
			if err := writePrivate(urlFile, url+"\n"); err != nil {
				log.Warn("cannot write the admin URL", "file", urlFile, "err", err)
			} else {
				files = append(files, urlFile)
			}
		}
	} else {
		close(srvDone)
	}
	attrs := []any{"peer", n.ID(), "domain", n.Domain(), "addrs", n.Host().Addrs()}
	if b := n.Bridge(); b != nil {
		attrs = append(attrs, "sip_udp", b.UDPAddr(), "sip_tcp", b.TCPAddr())
	}
	log.Info("node started", attrs...)

	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-c.Reload:
			c.reload(cfg.users())
		}
	}
	log.Info("shutting down", "timeout", c.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var errs []error
		if srv != nil {
			errs = append(errs, srv.Shutdown(sctx))
		}
		<-srvDone
		for _, f := range files {
			_ = os.Remove(f)
		}
		errs = append(errs, n.Close())
		done <- errors.Join(errs...)
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("daemon: shutdown: %w", err)
		}
		log.Info("stopped")
		return nil
	case <-sctx.Done():
		return fmt.Errorf("daemon: shutdown took longer than %v", c.ShutdownTimeout)
	}
}

// writePrivate writes a file only its owner can read, replacing it whole.
func writePrivate(path, content string) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp) // a leftover might have another mode
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// reload applies what can change while the node runs (see
// DaemonConfig.Reload) and logs what cannot. users are the node's users,
// nil without a users file.
func (c DaemonConfig) reload(users *Users) {
	log := c.Logger
	log.Info("reloading")
	next := c
	if c.ReloadConfig != nil {
		var err error
		if next, err = c.ReloadConfig(); err != nil {
			log.Error("reload: configuration refused, nothing changed", "err", err)
			return
		}
		next.Logger = c.Logger // validate without building a logger
	}
	// One read of the users file, to check it and to use it.
	nc, err := next.NodeConfig()
	if err != nil {
		log.Error("reload: configuration refused, nothing changed", "err", err)
		return
	}
	if c.ReloadConfig != nil {
		if c.LogLevel != nil {
			level, _ := next.level()
			if level != c.LogLevel.Level() {
				c.LogLevel.Set(level)
				log.Info("reload: log level set", "level", level)
			}
		}
		if changed := changedSettings(c, next, "log.level"); len(changed) > 0 {
			log.Warn("reload: changed settings need a restart", "settings", changed)
		}
	}
	if users == nil || next.SIP.UsersFile != c.SIP.UsersFile || nc.SIP == nil || nc.SIP.Users == nil {
		return // no users file, or a changed path (logged above)
	}
	users.Replace(nc.SIP.Users)
	log.Info("reload: users file read", "file", c.SIP.UsersFile, "users", users.Len())
}

// changedSettings lists the keys whose values differ between a and b,
// except those in skip.
func changedSettings(a, b DaemonConfig, skip ...string) []string {
	fields, _ := daemonFields()
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for _, f := range fields {
		if slices.Contains(skip, f.key) {
			continue
		}
		if !reflect.DeepEqual(va.FieldByIndex(f.index).Interface(), vb.FieldByIndex(f.index).Interface()) {
			out = append(out, f.key)
		}
	}
	return out
}

// enrollmentConfig reads the enrollment files into cfg.Enrollment.
func (c DaemonConfig) enrollmentConfig(cfg *Config) error {
	en := c.Enrollment
	if en.Authority == "" {
		switch {
		case len(en.Certificates) > 0:
			return &DaemonConfigError{"enrollment.certificates", errors.New("set without enrollment.authority")}
		case en.RevocationList != "":
			return &DaemonConfigError{"enrollment.revocation_list", errors.New("set without enrollment.authority")}
		}
		return nil
	}
	pub, err := enroll.ParsePublicKey(en.Authority)
	if err != nil {
		return &DaemonConfigError{"enrollment.authority", err}
	}
	ec := &EnrollmentConfig{Authority: pub, RefreshInterval: en.RefreshInterval}
	if en.RefreshInterval < 0 {
		return &DaemonConfigError{"enrollment.refresh_interval", fmt.Errorf("%v is negative", en.RefreshInterval)}
	}
	for i, f := range en.Certificates {
		data, err := os.ReadFile(f)
		if err != nil {
			return &DaemonConfigError{fmt.Sprintf("enrollment.certificates[%d]", i), err}
		}
		ec.Certificates = append(ec.Certificates, data)
	}
	if en.RevocationList != "" {
		data, err := os.ReadFile(en.RevocationList)
		if err != nil {
			return &DaemonConfigError{"enrollment.revocation_list", err}
		}
		ec.RevocationList = data
	}
	if err := ec.validate(c.Domain); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return &DaemonConfigError{ce.Field, ce.Err}
		}
		return err
	}
	cfg.Enrollment = ec
	return nil
}
