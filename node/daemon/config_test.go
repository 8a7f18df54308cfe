package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipua"
)

// clearEnv unsets every HIERSIP_ variable for the test.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, EnvPrefix) {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hiersip.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func daemonFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("node", pflag.ContinueOnError)
	fs.String("config", "", "")
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestDaemonConfigDefaults(t *testing.T) {
	clearEnv(t)
	c, err := Load("", daemonFlags(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Defaults()) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, Defaults())
	}
	if _, err := c.NodeConfig(); err == nil || err.Error() != "config: domain: required (--domain, HIERSIP_DOMAIN or domain: in the file)" {
		t.Fatalf("no domain: %v", err)
	}
	c, err = Load("", daemonFlags(t, "--domain", "example"))
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	nc, err := c.NodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if nc.Domain != "example" || nc.Bootstrap.DisableMDNS || nc.Bootstrap.DisableCache ||
		nc.SIP == nil || nc.SIP.UDP != "127.0.0.1:5060" || nc.SIP.TCP != "127.0.0.1:5060" ||
		nc.DataDir == "" || !reflect.DeepEqual(nc.ListenAddrs, node.DefaultListenAddrs) {
		t.Fatalf("hiersip node --domain example: %+v", nc)
	}
	if c.Admin.Listen != "127.0.0.1:8080" || c.ShutdownTimeout != DefaultShutdownTimeout {
		t.Fatalf("admin/shutdown defaults: %+v", c)
	}
}

func TestDaemonConfigDataDirDefault(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/x/data")
	if d := DefaultDataDir(); d != "/x/data/hiersip" {
		t.Fatalf("with XDG_DATA_HOME: %q", d)
	}
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", "/home/h")
	if d := DefaultDataDir(); d != "/home/h/.local/share/hiersip" {
		t.Fatalf("without XDG_DATA_HOME: %q", d)
	}
}

func TestDaemonConfigExampleFile(t *testing.T) {
	clearEnv(t)
	c, err := Load("../../hiersip.example.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	nc, err := c.NodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if nc.Domain != "pastry" || !reflect.DeepEqual(nc.KnownDomains, []string{"can", "example.org"}) ||
		nc.DataDir != "/var/lib/hiersip" || c.Admin.Listen != "127.0.0.1:8080" || c.Log.Format != "text" ||
		c.ShutdownTimeout != 10*time.Second || nc.SIP.UDP != "127.0.0.1:5060" {
		t.Fatalf("example file: %+v", c)
	}
	// Apart from the settings marked "example", the file shows the defaults.
	want := Defaults()
	want.Domain, want.KnownDomains, want.DataDir = c.Domain, c.KnownDomains, c.DataDir
	c.Logger = nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("example file differs from the defaults:\n got %+v\nwant %+v", c, want)
	}
}

func TestDaemonConfigPrecedence(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, `
domain: file
sip:
  udp: 127.0.0.1:1001
  tcp: 127.0.0.1:1002
  max_expires: 2h
bootstrap:
  mdns: true
  peers: [/ip4/127.0.0.1/tcp/1/p2p/12D3KooWEAzSLN9VGZQ8zrrameNnsRXAfPPcFdVqpx1NzxFsFJci]
election:
  weight: 2
log:
  level: debug
`)
	c, err := Load(path, daemonFlags(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "file" || c.SIP.UDP != "127.0.0.1:1001" || c.SIP.MaxExpires != 2*time.Hour ||
		len(c.Bootstrap.Peers) != 1 || c.Election.Weight != 2 || c.Log.Level != "debug" || c.Admin.Listen != "127.0.0.1:8080" {
		t.Fatalf("file over defaults: %+v", c)
	}

	t.Setenv("HIERSIP_DOMAIN", "env")
	t.Setenv("HIERSIP_SIP_UDP", "127.0.0.1:2001")
	t.Setenv("HIERSIP_BOOTSTRAP_MDNS", "false")
	t.Setenv("HIERSIP_KNOWN_DOMAINS", "a, b.c")
	t.Setenv("HIERSIP_SIP_MIN_EXPIRES", "90")
	t.Setenv("HIERSIP_CONFIG", "ignored.yaml")
	c, err = Load(path, daemonFlags(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "env" || c.SIP.UDP != "127.0.0.1:2001" || c.SIP.TCP != "127.0.0.1:1002" || c.Bootstrap.MDNS ||
		!reflect.DeepEqual(c.KnownDomains, []string{"a", "b.c"}) || c.SIP.MinExpires != 90*time.Second {
		t.Fatalf("env over file: %+v", c)
	}

	c, err = Load(path, daemonFlags(t, "--domain", "flag", "--sip-udp", "127.0.0.1:3001",
		"--bootstrap-mdns=true", "--known-domains", "x,y", "--election-weight", "3", "--admin-listen", ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "flag" || c.SIP.UDP != "127.0.0.1:3001" || !c.Bootstrap.MDNS ||
		!reflect.DeepEqual(c.KnownDomains, []string{"x", "y"}) || c.Election.Weight != 3 || c.Admin.Listen != "" ||
		c.SIP.TCP != "127.0.0.1:1002" || c.SIP.MinExpires != 90*time.Second {
		t.Fatalf("flags over env: %+v", c)
	}
	c.Logger = quiet
	nc, err := c.NodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if nc.Bootstrap.DisableMDNS || nc.SIP.MaxExpires != 2*time.Hour || nc.Election.Weight != 3 {
		t.Fatalf("node config: %+v", nc)
	}
}

func TestDaemonConfigSIPOff(t *testing.T) {
	clearEnv(t)
	c, err := Load("", daemonFlags(t, "--domain", "d", "--sip-udp", "", "--sip-tcp", ""))
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	nc, err := c.NodeConfig()
	if err != nil || nc.SIP != nil {
		t.Fatalf("both SIP addresses empty: %v, %+v", err, nc.SIP)
	}
}

func TestDaemonConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		want       string
	}{
		{"bad port", "sip: {udp: \"127.0.0.1:x\"}", nil, `config: sip.udp: "127.0.0.1:x": invalid port`},
		{"port range", "sip: {tcp: \"127.0.0.1:70000\"}", nil, `config: sip.tcp: "127.0.0.1:70000": invalid port`},
		{"no port", "admin: {listen: localhost}", nil, `config: admin.listen: "localhost": want host:port`},
		{"bool", "bootstrap: {mdns: maybe}", nil, `config: bootstrap.mdns: "maybe": want true or false`},
		{"number in env", "", map[string]string{"HIERSIP_ELECTION_WEIGHT": "heavy"}, `config: election.weight: "heavy": want a number`},
		{"integer", "election: {proxies: 1.5}", nil, `config: election.proxies: "1.5": want an integer`},
		{"duration", "sip: {min_expires: soon}", nil, `config: sip.min_expires: "soon": invalid duration`},
		{"unknown key", "sip: {udpp: x}", nil, `config: sip.udpp: unknown setting`},
		{"unknown section", "sipp: {udp: x}", nil, `config: sipp.udp: unknown setting`},
		{"section as value", "sip: 5060", nil, `config: sip: want a mapping of settings`},
		{"unknown env", "", map[string]string{"HIERSIP_SIP_UPD": "x"}, `config: HIERSIP_SIP_UPD: unknown setting in the environment`},
		{"domain", "domain: \"Bad Domain\"", nil, `config: domain: `},
		{"known domain", "known_domains: [ok, \"no way\"]", nil, `config: known_domains[1]: `},
		{"listen addr", "listen_addrs: [garbage]", nil, `config: listen_addrs[0]: `},
		{"peer without id", "bootstrap: {peers: [/ip4/127.0.0.1/tcp/1]}", nil, `config: bootstrap.peers[0]: missing /p2p/<peer-id>`},
		{"web station", "global: {web_stations: [\"ftp://x\"]}", nil, `config: global.web_stations[0]: "ftp://x" is not an http(s) URL`},
		{"log level", "log: {level: loud}", nil, `config: log.level: "loud": want debug, info, warn or error`},
		{"log format", "log: {format: xml}", nil, `config: log.format: "xml": want text or json`},
		{"reachability", "nat: {reachability: sometimes}", nil, `config: nat.reachability: "sometimes": want public, private or empty`},
		{"moved reachability", "election: {reachability: public}", nil, `config: election.reachability: moved to nat.reachability`},
		{"relay", "nat: {relays: [/ip4/1.2.3.4/tcp/1]}", nil, `config: nat.relays[0]: `},
		{"relay duration", "nat: {relay_duration: -1m}", nil, `config: nat.relay_duration: -1m0s is negative`},
		{"relay data", "nat: {relay_data: -1}", nil, `config: nat.relay_data: -1 is negative`},
		{"hole punching", "nat: {hole_punching: sometimes}", nil, `config: nat.hole_punching: "sometimes": want true or false`},
		{"weight", "election: {weight: -1}", nil, `config: election.weight: -1 is negative`},
		{"expires order", "sip: {min_expires: 1h, max_expires: 1m}", nil, `config: sip.max_expires: 1m0s is below sip.min_expires 1h0m0s`},
		{"users file", "sip: {users_file: /nonexistent/users}", nil, `config: sip.users_file: `},
		{"advertise", "sip: {advertise: \"0.0.0.0\"}", nil, `config: sip.advertise: sipbridge: invalid option: advertise "0.0.0.0"`},
		{"advertise port", "", map[string]string{"HIERSIP_SIP_ADVERTISE": "sip.example.org:0"}, `config: sip.advertise: `},
		{"nat keepalive", "sip: {nat_keepalive: -1s}", nil, `config: sip.nat_keepalive: -1s is negative`},
		{"shutdown", "shutdown_timeout: 0s", nil, `config: shutdown_timeout: 0s: want a positive duration`},
		{"authority", "enrollment: {authority: notakey}", nil, `config: enrollment.authority: enroll: invalid authority key`},
		{"certificates without authority", "enrollment: {certificates: [x.pem]}", nil, `config: enrollment.certificates: set without enrollment.authority`},
		{"certificate file", "enrollment: {authority: " + testAuthorityPub + ", certificates: [/nonexistent/c.pem]}", nil, `config: enrollment.certificates[0]: `},
		{"certificate content", "enrollment: {authority: " + testAuthorityPub + ", certificates: [" + writeFile(t, "garbage") + "]}", nil, `config: enrollment.certificates[0]: domains: invalid enrollment certificate`},
		{"revocation list", "enrollment: {authority: " + testAuthorityPub + ", revocation_list: " + writeFile(t, "garbage") + "}", nil, `config: enrollment.revocation_list: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			file := tc.file
			if !strings.HasPrefix(file, "domain:") {
				file = "domain: d\n" + file
			}
			path := writeFile(t, file+"\n")
			c, err := Load(path, nil)
			if err == nil {
				c.Logger = quiet
				_, err = c.NodeConfig()
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v, want %s…", err, tc.want)
			}
			var de *node.ConfigError
			if !errors.As(err, &de) {
				t.Fatalf("%v is not a *node.ConfigError", err)
			}
		})
	}
}

func TestDaemonSettingNamesAreUnique(t *testing.T) {
	fields, _ := settings()
	flags, envs := map[string]string{}, map[string]string{}
	for _, f := range fields {
		if o, ok := flags[flagName(f.key)]; ok {
			t.Errorf("flag %s of %s and %s", flagName(f.key), o, f.key)
		}
		if o, ok := envs[envName(f.key)]; ok {
			t.Errorf("variable %s of %s and %s", envName(f.key), o, f.key)
		}
		flags[flagName(f.key)], envs[envName(f.key)] = f.key, f.key
		if f.help == "" {
			t.Errorf("%s has no help", f.key)
		}
	}
}

func TestDaemonConfigNAT(t *testing.T) {
	clearEnv(t)
	relay := "/ip4/1.2.0.1/tcp/4001/p2p/12D3KooWBhSxMN1u9fRpjJyKLqnk3qm4hzKnnjMEWVaGn8VQRkBo"
	path := writeFile(t, "domain: d\nnat:\n  public: true\n  relays: ["+relay+"]\n  port_map: true\n  relay_duration: 5m\n  relay_data: 4096\n")
	t.Setenv("HIERSIP_NAT_REACHABILITY", "private")
	c, err := Load(path, daemonFlags(t, "--nat-hole-punching=false", "--nat-auto-relay=false"))
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	nc, err := c.NodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := node.NATConfig{Public: true, Relays: []string{relay}, DisableAutoRelay: true, DisableHolePunching: true,
		PortMap: true, ForceReachability: "private", RelayDuration: 5 * time.Minute, RelayData: 4096}
	if !reflect.DeepEqual(nc.NAT, want) {
		t.Fatalf("NAT:\n got %+v\nwant %+v", nc.NAT, want)
	}
	// One reachability: nat.reachability is the host's, and the election,
	// left without one of its own, follows it (node's TestNATReachability).
	if nc.Election.Reachability != "" || nc.NAT.ForceReachability != "private" {
		t.Fatalf("election reachability %q, host %q", nc.Election.Reachability, nc.NAT.ForceReachability)
	}
	// Defaults: a home node (relays and hole punching on, reachability by AutoNAT).
	clearEnv(t)
	c, err = Load("", daemonFlags(t, "--domain", "d"))
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	if nc, err = c.NodeConfig(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(nc.NAT, node.NATConfig{}) {
		t.Fatalf("default NAT: %+v", nc.NAT)
	}
}

// testAuthorityPub is an Ed25519 public key in the config's text form.
const testAuthorityPub = "CAESIG6rQoEP5CkITCbHFU7ELStQwmFrsNtA0hnC4EnPsaNQ"

// TestDaemonReload runs the daemon in process and reloads it as SIGHUP does:
// a user added to the users file can register, the log level follows the
// file, a changed setting that needs a restart is logged, a broken file is
// refused without stopping the node.
func TestDaemonReload(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("alice:d:"+sipbridge.HA1("alice", "d", "a-secret")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := func(level, extra string) string {
		return fmt.Sprintf(`domain: d
data_dir: %s
listen_addrs: [/ip4/127.0.0.1/tcp/0]
bootstrap: {mdns: false, cache: false}
global: {mdns: false}
sip: {udp: "127.0.0.1:0", tcp: "127.0.0.1:0", users_file: %s}
admin: {listen: "127.0.0.1:0"}
log: {level: %s, format: json}
%s`, filepath.Join(dir, "data"), users, level, extra)
	}
	path := filepath.Join(dir, "hiersip.yaml")
	if err := os.WriteFile(path, []byte(conf("info", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	if c.Logger, c.LogLevel, err = c.NewLoggerLevel(&logs); err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{})
	c.Reload = reload
	c.ReloadConfig = func() (Config, error) { return Load(path, nil) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunDaemon: %v", err)
		}
	})
	logLine := func(msg string) map[string]any {
		t.Helper()
		var rec map[string]any
		eventually(t, 20*time.Second, "log "+msg, func() error {
			for _, l := range strings.Split(logs.String(), "\n") {
				if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
					return nil
				}
			}
			return errors.New("not yet")
		})
		return rec
	}
	started := logLine("node started")
	sipAddr, _ := started["sip_udp"].(string)
	ua := func(user, pass string) error {
		u, err := sipua.NewUA("sip:"+user+"@d", sipAddr, sipua.WithUACredentials(user, pass), sipua.WithUALogger(quiet))
		if err != nil {
			return err
		}
		defer u.Close()
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		_, err = u.Register(rctx, time.Hour)
		return err
	}
	if err := ua("bob", "b-secret"); err == nil {
		t.Fatal("bob registered before he was added")
	}
	if strings.Contains(logs.String(), `"level":"DEBUG"`) {
		t.Fatal("debug records at level info")
	}

	// bob is added, the level set to debug, and the SIP address changed.
	f, err := os.OpenFile(users, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "bob:d:%s\n", sipbridge.HA1("bob", "d", "b-secret"))
	f.Close()
	if err := os.WriteFile(path, []byte(strings.Replace(conf("debug", ""), `udp: "127.0.0.1:0"`, `udp: "127.0.0.1:1"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	rec := logLine("reload: users file read")
	if rec["users"] != float64(2) {
		t.Fatalf("reload: %v", rec)
	}
	if rec := logLine("reload: changed settings need a restart"); fmt.Sprint(rec["settings"]) != "[sip.udp]" {
		t.Fatalf("restart warning: %v", rec)
	}
	if c.LogLevel.Level() != slog.LevelDebug {
		t.Fatalf("log level %v after the reload", c.LogLevel.Level())
	}
	if err := ua("bob", "b-secret"); err != nil {
		t.Fatalf("bob after the reload: %v", err)
	}
	if err := ua("alice", "a-secret"); err != nil {
		t.Fatalf("alice after the reload: %v", err)
	}

	// A broken configuration changes nothing and stops nothing.
	if err := os.WriteFile(path, []byte(conf("loud", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	logLine("reload: configuration refused, nothing changed")
	if c.LogLevel.Level() != slog.LevelDebug {
		t.Fatal("a refused reload changed the level")
	}
	if err := ua("bob", "b-secret"); err != nil {
		t.Fatalf("bob after a refused reload: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("the daemon stopped: %v", err)
	default:
	}
}

// TestDaemonWriteSettings: the settings hiersip node --check prints are a
// file that loads back into the same configuration.
func TestDaemonWriteSettings(t *testing.T) {
	clearEnv(t)
	c, err := Load(writeFile(t, "domain: d\nknown_domains: [a, b]\nsip: {max_expires: 2h, limits: {peer_rate: 5}}\nnat: {relays: [/ip4/1.2.0.1/tcp/1/p2p/12D3KooWBhSxMN1u9fRpjJyKLqnk3qm4hzKnnjMEWVaGn8VQRkBo]}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := c.WriteSettings(&out); err != nil {
		t.Fatal(err)
	}
	back, err := Load(writeFile(t, out.String()), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(c, back) {
		t.Fatalf("round trip:\n got %+v\nwant %+v\n%s", back, c, out.String())
	}
}

// TestDaemonConfigSIPNAT: sip.advertise and sip.nat_keepalive reach the node's SIPConfig;
// nat_keepalive 0 turns the keep-alives off, the default is sipbridge's.
func TestDaemonConfigSIPNAT(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		file      string
		advertise string
		keepalive time.Duration
	}{
		{"domain: d\n", "", sipbridge.DefaultNATKeepalive},
		{"domain: d\nsip: {advertise: \"[2001:db8::7]:5080\", nat_keepalive: 0}\n", "[2001:db8::7]:5080", -1},
		{"domain: d\nsip: {advertise: sip.example.org, nat_keepalive: 45s}\n", "sip.example.org", 45 * time.Second},
	} {
		c, err := Load(writeFile(t, tc.file), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Logger = quiet
		nc, err := c.NodeConfig()
		if err != nil {
			t.Fatal(err)
		}
		if nc.SIP.Advertise != tc.advertise || nc.SIP.NATKeepalive != tc.keepalive {
			t.Errorf("%q: advertise %q keepalive %v", tc.file, nc.SIP.Advertise, nc.SIP.NATKeepalive)
		}
	}
}
