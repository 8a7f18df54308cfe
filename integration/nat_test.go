package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/netns"
	"github.com/hiersip/hiersip/integration/testenv"
	"github.com/hiersip/hiersip/node"
)

// The NAT test bed (DESIGN §5): an "internet" bridge with public-looking
// addresses (1.2.0.0/24, no link to the machine's network) carrying a public
// node P (relay, AutoNAT server, global seed) and three NAT routers; behind
// router 1 the LAN of domain alpha (a1, a2), behind router 2 the LAN of
// domain beta (b1, b2), behind router 3 a lone node of alpha (c1). LAN nodes
// find each other by mDNS, the global overlay and their relay through P.
// Every node is a `hiersip node` process built from ./cmd/hiersip, with a
// configuration file of its own; the user agents are `hiersip answer` and
// `hiersip call` processes in the nodes' namespaces, talking SIP to their
// node on the namespace's loopback. Status, paths and disconnections go
// through `hiersip status` / `hiersip disconnect` and the admin endpoint.
//
//	        P 1.2.0.1
//	           │ inet 1.2.0.0/24
//	  ┌────────┼──────────────┐
//	r1 .11    r2 .12         r3 .13      (MASQUERADE + drop new inbound)
//	  │ 10.1.0/24  │ 10.2.0/24    │ 10.3.0/24
//	a1 a2       b1 b2           c1

// Addresses inside every node's namespace: each namespace has a loopback of
// its own, so all nodes use the same ones.
const (
	nsSIP   = "127.0.0.1:5060"
	nsAdmin = "http://127.0.0.1:8080"
)

// natBed is the test bed's network and the hiersip binary.
type natBed struct {
	t          testing.TB
	n          *netns.Net
	bin        string
	pub        *netns.Namespace
	ns         map[string]*netns.Namespace
	p          *hsNode
	relayAddrs []string
	gen        int
	known      []string
	lans       map[string]*netns.Bridge // LAN bridges by router ("r1", "r2")
	ips        map[string]string        // LAN address of each host ("a1": "10.1.0.2")
	lanSIP     bool                     // LAN nodes listen for SIP on their LAN address, not loopback
}

// hsNode is one `hiersip node` process.
type hsNode struct {
	b       *natBed
	label   string
	ns      *netns.Namespace
	proc    *netns.Proc
	id      string
	dataDir string
	sip     string      // the node's SIP address, for `hiersip call|answer --node`
	ua      *netns.Proc // a `hiersip answer` registered with the node
	stopped bool
}

func newNATBed(t testing.TB) *natBed {
	t.Helper()
	testenv.RequireRoot(t)
	n := netns.New(t)
	b := &natBed{t: t, n: n, ns: map[string]*netns.Namespace{}, known: []string{"alpha", "beta", "gamma", "delta", "pub"},
		lans: map[string]*netns.Bridge{}, ips: map[string]string{}}
	b.bin = buildHelper(t, "github.com/hiersip/hiersip/cmd/hiersip")
	t.Logf("NAT test bed %s: binary %s, logs and configurations in %s (kept on failure)", n.Prefix(), b.bin, n.LogDir())

	inet := n.Bridge("inet")
	b.pub = n.Namespace("pub")
	inet.Attach(b.pub, "eth0", "1.2.0.1/24")
	lans := []struct {
		router, wan, lan string
		hosts            []string
	}{
		{"r1", "1.2.0.11/24", "10.1.0", []string{"a1", "a2"}},
		{"r2", "1.2.0.12/24", "10.2.0", []string{"b1", "b2"}},
		{"r3", "1.2.0.13/24", "10.3.0", []string{"c1"}},
	}
	for _, l := range lans {
		r := n.Namespace(l.router)
		inet.Attach(r, "wan0", l.wan)
		var lan *netns.Bridge
		if len(l.hosts) > 1 {
			lan = n.Bridge("lan-" + l.router)
			lan.Attach(r, "lan0", l.lan+".1/24")
			b.lans[l.router] = lan
		}
		for i, h := range l.hosts {
			ns := n.Namespace(h)
			addr := fmt.Sprintf("%s.%d/24", l.lan, i+2)
			b.ips[h] = strings.TrimSuffix(addr, "/24")
			if lan != nil {
				lan.Attach(ns, "eth0", addr)
			} else {
				n.Link(r, "lan0", l.lan+".1/24", ns, "eth0", addr)
			}
			ns.AddRoute("default", l.lan+".1")
			b.ns[h] = ns
		}
		r.NAT("wan0")
	}
	return b
}

// nodeConfig is the part of a node's configuration file that differs
// between nodes; startNode writes the rest.
type nodeConfig struct {
	domain       string
	listen       []string
	public, seed bool
	mdns, cache  bool
	peers        []string // bootstrap.peers
	holePunching bool
	optOut       bool
	sip          bool
	data         string        // label of the data directory (default: the node's)
	relayLimit   time.Duration // nat.relay_duration of a public node (0: default)
	sipAddr      string        // with sip: the SIP listen address (default nsSIP)
}

func yamlList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// startNode writes the configuration file of label (data directory
// <logs>/<label>.data, kept across restarts of the same label) and runs
// `hiersip node` in ns until it logs "node started".
func (b *natBed) startNode(ns *netns.Namespace, label string, c nodeConfig) *hsNode {
	b.t.Helper()
	data := c.data
	if data == "" {
		data = label
	}
	nd := &hsNode{b: b, label: label, ns: ns, dataDir: filepath.Join(b.n.LogDir(), data+".data")}
	if err := os.MkdirAll(nd.dataDir, 0o700); err != nil {
		b.t.Fatal(err)
	}
	listen := c.listen
	if listen == nil {
		listen = node.DefaultListenAddrs
	}
	var relays []string
	if !c.public {
		relays = b.relayAddrs
	}
	sipAddr := ""
	if c.sip {
		sipAddr = nsSIP
		if c.sipAddr != "" {
			sipAddr = c.sipAddr
		}
	}
	nd.sip = sipAddr
	reach := "private"
	if c.public {
		reach = "" // public with nat.public
	}
	cfg := fmt.Sprintf(`# %s (generated by the NAT test bed)
domain: %s
known_domains: %s
data_dir: %q
listen_addrs: %s
bootstrap:
  mdns: %v
  cache: %v
  peers: %s
global:
  mdns: false
  cache: false
  peers: %s
global_seed: %v
sip:
  udp: %q
  tcp: %q
  # no users file: the phones of the bed's LANs are trusted (README "Limits and overload")
  trusted_networks: ["10.0.0.0/8"]
election:
  opt_out: %v
nat:
  public: %v
  relays: %s
  hole_punching: %v
  reachability: %q
  relay_duration: %v
admin:
  listen: 127.0.0.1:8080
log:
  level: debug
  format: json
shutdown_timeout: 3s
`, label, c.domain, yamlList(b.known), nd.dataDir, yamlList(listen), c.mdns, c.cache, yamlList(c.peers),
		yamlList(b.relayAddrs), c.seed, sipAddr, sipAddr, c.optOut, c.public, yamlList(relays), c.holePunching, reach, c.relayLimit)
	path := filepath.Join(b.n.LogDir(), label+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.t.Fatal(err)
	}
	nd.proc = ns.Start(label, b.bin, "node", "--config", path)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	line, err := nd.proc.WaitFor(ctx, func(l string) bool { return logMsg(l) == "node started" })
	if err != nil {
		b.t.Fatalf("%s did not start: %v", label, err)
	}
	var rec struct{ Peer string }
	_ = json.Unmarshal([]byte(line), &rec)
	if nd.id = rec.Peer; nd.id == "" {
		b.t.Fatalf("%s: no peer ID in %q", label, line)
	}
	return nd
}

// logRecord is a line of a node's JSON log.
type logRecord struct {
	Time   time.Time `json:"time"`
	Msg    string    `json:"msg"`
	Peer   string    `json:"peer"`   // "node started"
	Remote string    `json:"remote"` // "connection opened", "connection closed"
	Path   string    `json:"path"`
}

func logMsg(line string) string {
	var r logRecord
	if json.Unmarshal([]byte(line), &r) != nil {
		return ""
	}
	return r.Msg
}

// cli runs `hiersip args…` in the node's namespace.
func (nd *hsNode) cli(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := nd.ns.Command(ctx, nd.b.bin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: hiersip %s: %w: %s", nd.label, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// status reads the node's /status with `hiersip status --json`.
func (nd *hsNode) status() (node.Status, error) {
	var s node.Status
	out, err := nd.cli(10*time.Second, "status", "--json", "--admin", nsAdmin)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return s, fmt.Errorf("%s: status: %w", nd.label, err)
	}
	return s, nil
}

// eventually calls f every 100 ms until it returns nil or d passes.
func eventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	if err := poll(d, f); err != nil {
		t.Fatalf("%s: not within %v: %v", what, d, err)
	}
}

func poll(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// relayed returns the node's relayed addresses with its /p2p/ suffix.
func (nd *hsNode) relayed() ([]string, error) {
	s, err := nd.status()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range s.Addrs {
		if strings.Contains(a, "/p2p-circuit") {
			out = append(out, a+"/p2p/"+nd.id)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no relayed address yet: %v", nd.label, s.Addrs)
	}
	return out, nil
}

// startUA runs `hiersip answer` as aor with the node, until it registered
// (it retries while the node cannot store the binding yet).
func (nd *hsNode) startUA(aor string) {
	t := nd.b.t
	t.Helper()
	for try := 0; ; try++ {
		p := nd.ns.Start(fmt.Sprintf("%s-ua%d", nd.label, try), nd.b.bin, "answer", "--node", nd.sip, "--as", aor, "--timeout", "10s")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := p.WaitFor(ctx, func(l string) bool { return strings.HasPrefix(l, "registered ") })
		cancel()
		if err == nil {
			nd.ua = p
			return
		}
		_ = p.Stop()
		if try == 4 {
			t.Fatalf("%s: %s never registered: %v", nd.label, aor, err)
		}
	}
}

// stop stops the node and its UA.
func (nd *hsNode) stop() {
	if nd.ua != nil {
		_ = nd.ua.Stop()
	}
	_ = nd.proc.Stop()
	nd.stopped = true
}

// startPublic starts P (the same identity each time, relayLimit its
// nat.relay_duration) and records its addresses on the internet.
func (b *natBed) startPublic(relayLimit time.Duration) {
	b.t.Helper()
	b.p = b.startNode(b.pub, fmt.Sprintf("P-g%d", b.gen+1), nodeConfig{domain: "pub", public: true, seed: true,
		listen: []string{"/ip4/1.2.0.1/tcp/4001", "/ip4/1.2.0.1/udp/4001/quic-v1"}, data: "P", relayLimit: relayLimit})
	b.relayAddrs = []string{"/ip4/1.2.0.1/tcp/4001/p2p/" + b.p.id, "/ip4/1.2.0.1/udp/4001/quic-v1/p2p/" + b.p.id}
}

// lanNodes is one generation of the nodes of LANs 1 and 2: domain da on LAN
// 1 (a1 with alice, a2), db on LAN 2 (b1 with bob, b2). Each generation has
// domains of its own, so that the proxy records of an earlier one (alive up
// to a minute) do not mislead it.
type lanNodes struct {
	a1, a2, b1, b2 *hsNode
	da, db         string
}

func (l lanNodes) all() []*hsNode { return []*hsNode{l.a1, l.a2, l.b1, l.b2} }
func (l lanNodes) alice() string  { return "sip:alice@" + l.da }
func (l lanNodes) bob() string    { return "sip:bob@" + l.db }

func (l lanNodes) stop() {
	var wg sync.WaitGroup
	for _, nd := range l.all() {
		wg.Go(nd.stop)
	}
	wg.Wait()
}

// startLANs starts a generation of LAN nodes and waits until they hold
// relay reservations, joined their domains, elected a proxy each, bob is
// registered and a call from alice to bob completes (the proxies found each
// other in the global overlay).
func (b *natBed) startLANs(da, db string, holePunching bool) lanNodes {
	b.t.Helper()
	b.gen++
	lan := func(host, domain string) *hsNode {
		cfg := nodeConfig{domain: domain, mdns: true, holePunching: holePunching, sip: true}
		if b.lanSIP {
			cfg.sipAddr = b.ips[host] + ":5060"
		}
		return b.startNode(b.ns[host], fmt.Sprintf("%s-g%d", host, b.gen), cfg)
	}
	l := lanNodes{a1: lan("a1", da), a2: lan("a2", da), b1: lan("b1", db), b2: lan("b2", db), da: da, db: db}
	b.t.Logf("generation %d: P=%s %s: a1=%s a2=%s; %s: b1=%s b2=%s", b.gen, b.p.id, da, l.a1.id, l.a2.id, db, l.b1.id, l.b2.id)
	for _, nd := range l.all() {
		eventually(b.t, 45*time.Second, nd.label+" joins its domain and holds a relay reservation", func() error {
			s, err := nd.status()
			if err != nil {
				return err
			}
			if !s.Joined {
				return errors.New("not joined")
			}
			_, err = nd.relayed()
			return err
		})
	}
	for _, pair := range [][2]*hsNode{{l.a1, l.a2}, {l.b1, l.b2}} {
		eventually(b.t, 30*time.Second, "a proxy elected among "+pair[0].label+", "+pair[1].label, func() error {
			for _, nd := range pair {
				if s, err := nd.status(); err == nil && s.IsProxy {
					return nil
				}
			}
			return errors.New("no proxy")
		})
	}
	l.b1.startUA(l.bob())
	eventually(b.t, 60*time.Second, "a first call "+l.alice()+" → "+l.bob(), func() error {
		_, err := placeCall(l.a1, l.alice(), l.bob())
		return err
	})
	return l
}

// callResult is one call of `hiersip call`.
type callResult struct {
	setup, bye time.Duration
}

var (
	setupRE = regexp.MustCompile(`call set up in (\S+)`)
	byeRE   = regexp.MustCompile(`hung up \(BYE answered in (\S+)\)`)
)

// placeCall calls target as aor from the node's namespace with `hiersip
// call` (registers, INVITE, BYE at once) and returns the setup (INVITE to
// 200) and BYE times. The ACK and BYE go node to node (draft §7 step 11).
func placeCall(nd *hsNode, aor, target string) (callResult, error) {
	out, err := nd.cli(40*time.Second, "call", "--node", nd.sip, "--as", aor, "--duration", "0", "--timeout", "15s", target)
	if err != nil {
		return callResult{}, err
	}
	var r callResult
	m, mb := setupRE.FindStringSubmatch(out), byeRE.FindStringSubmatch(out)
	if m == nil || mb == nil {
		return r, fmt.Errorf("%s: call %s: no setup or BYE time in:\n%s", nd.label, target, out)
	}
	r.setup, _ = time.ParseDuration(m[1])
	r.bye, _ = time.ParseDuration(mb[1])
	return r, nil
}

// disconnectAcross closes every connection between the two LANs (with
// `hiersip disconnect` on both sides), so that the next call starts through
// the relay again.
func disconnectAcross(t testing.TB, l lanNodes) {
	t.Helper()
	for _, side := range [][2][]*hsNode{{{l.a1, l.a2}, {l.b1, l.b2}}, {{l.b1, l.b2}, {l.a1, l.a2}}} {
		for _, from := range side[0] {
			args := []string{"disconnect", "--admin", nsAdmin, "--data-dir", from.dataDir}
			for _, to := range side[1] {
				args = append(args, to.id)
			}
			if _, err := from.cli(15*time.Second, args...); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// crossPaths reads the paths between the LANs from the alpha nodes'
// status: "a1-g1→b1-g1=direct …", and the path between the caller's and
// the callee's nodes (a1, b1), "none" if not connected.
func crossPaths(l lanNodes) (desc, dialog string, direct int, err error) {
	var parts []string
	dialog = "none"
	for _, from := range []*hsNode{l.a1, l.a2} {
		s, err := from.status()
		if err != nil {
			return "", "", 0, err
		}
		for _, to := range []*hsNode{l.b1, l.b2} {
			for _, p := range s.Peers {
				if p.PeerID != to.id {
					continue
				}
				parts = append(parts, from.label+"→"+to.label+"="+p.Path)
				if p.Direct > 0 {
					direct++
				}
				if from == l.a1 && to == l.b1 {
					dialog = p.Path
				}
			}
		}
	}
	return strings.Join(parts, " "), dialog, direct, nil
}

// directAfterRelayed reads the caller node's log from line mark on: the
// path of its first connection to peer ("relayed", "direct" or "none") and
// the time from the first relayed connection to the first direct one after
// it, or -1.
func directAfterRelayed(nd *hsNode, mark int, peer string) (first string, d time.Duration) {
	var relayed time.Time
	first = "none"
	lines := nd.proc.Lines()
	for _, l := range lines[min(mark, len(lines)):] {
		var r logRecord
		if json.Unmarshal([]byte(l), &r) != nil || r.Msg != "connection opened" || r.Remote != peer {
			continue
		}
		if first == "none" {
			first = r.Path
		}
		switch {
		case r.Path == "relayed" && relayed.IsZero():
			relayed = r.Time
		case r.Path == "direct" && !relayed.IsZero():
			return first, r.Time.Sub(relayed)
		}
	}
	return first, -1
}

// natRuns are the figures of runs of interDomainCalls.
type natRuns struct {
	completed, direct       int // calls completed; runs whose dialog path (a1–b1) went direct
	startedRelayed          int // runs whose first a1–b1 connection was relayed
	cold, warm, punch, byes []time.Duration
}

// interDomainCalls runs alice@da (a1) → bob@db (b1) runs times: each run
// closes the connections between the LANs, places a cold call (the paths
// start relayed), waits for hole punching (with it on) to make the caller
// node's path to the callee node direct, and places a warm call.
func interDomainCalls(t testing.TB, l lanNodes, runs int, holePunching bool) natRuns {
	t.Helper()
	var r natRuns
	for i := range runs {
		disconnectAcross(t, l)
		mark := len(l.a1.proc.Lines())
		cold, err := placeCall(l.a1, l.alice(), l.bob())
		if err != nil {
			t.Errorf("run %d: cold call: %v", i, err)
			continue
		}
		r.completed++
		r.cold = append(r.cold, cold.setup)
		r.byes = append(r.byes, cold.bye)
		if holePunching {
			// Hole punching runs beside the relayed exchange: wait for it.
			_ = poll(10*time.Second, func() error {
				if _, dialog, _, err := crossPaths(l); err != nil || !strings.Contains(dialog, "direct") {
					return fmt.Errorf("a1–b1 %s %v", dialog, err)
				}
				return nil
			})
		}
		desc, dialog, direct, err := crossPaths(l)
		if err != nil {
			t.Fatal(err)
		}
		first, punch := directAfterRelayed(l.a1, mark, l.b1.id)
		if first == "relayed" {
			r.startedRelayed++
		}
		if strings.Contains(dialog, "direct") {
			r.direct++
			if punch >= 0 {
				r.punch = append(r.punch, punch)
			}
		}
		if !holePunching && direct > 0 {
			t.Errorf("run %d: direct connections between the LANs with hole punching off: %s", i, desc)
		}
		warm, err := placeCall(l.a1, l.alice(), l.bob())
		if err != nil {
			t.Errorf("run %d: warm call: %v", i, err)
		} else {
			r.completed++
			r.warm = append(r.warm, warm.setup)
			r.byes = append(r.byes, warm.bye)
		}
		t.Logf("run %d: cold call set up in %v (BYE %v), warm %v; a1–b1 path started %s, ended %s (direct %v after the relayed one); paths between the LANs: %s",
			i, ms(cold.setup), ms(cold.bye), ms(warm.setup), first, dialog, ms(punch), desc)
	}
	return r
}

func ms(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// checkNothingLeft fails t if anything of the test bed with prefix is left:
// namespaces, interfaces or processes of the binary bin.
func checkNothingLeft(t testing.TB, prefix, bin string) {
	t.Helper()
	var left []string
	if ns, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ns {
			if strings.HasPrefix(e.Name(), prefix) {
				left = append(left, "namespace "+e.Name())
			}
		}
	}
	if f, err := os.Open("/proc/net/dev"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			name, _, _ := strings.Cut(strings.TrimSpace(sc.Text()), ":")
			if strings.HasPrefix(name, prefix) {
				left = append(left, "interface "+name)
			}
		}
		_ = f.Close()
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range procs {
		if exe, err := os.Readlink(p); err == nil && bin != "" && strings.TrimSuffix(exe, " (deleted)") == bin {
			left = append(left, "process "+filepath.Base(filepath.Dir(p))+" ("+exe+")")
		}
	}
	if len(left) > 0 {
		t.Errorf("the NAT test bed %s left behind: %s", prefix, strings.Join(left, ", "))
	}
}

// TestNAT runs the NAT test bed: calls between two NATed domains with hole
// punching (it must go direct at least once) and with relays only, and a
// lone NATed node joining its domain through configured, then cached, peers.
func TestNAT(t *testing.T) {
	var b *natBed
	// Registered before the bed's own cleanups, so it runs after them.
	t.Cleanup(func() {
		if b != nil {
			checkNothingLeft(t, b.n.Prefix(), b.bin)
		}
	})
	b = newNATBed(t)
	b.startPublic(0)
	lan := b.startLANs("alpha", "beta", true)

	// 1. alice@alpha (LAN 1) calls bob@beta (LAN 2) through both NATs:
	// caller node → alpha proxy → beta proxy → callee node, ACK and BYE
	// node to node; a cold call starts on the relay, hole punching then
	// makes the path direct.
	t.Run("InterDomainCall", func(t *testing.T) {
		const tries = 3
		r := interDomainCalls(t, lan, tries, true)
		t.Logf("RESULT hole punching on: %d of %d calls completed; the a1–b1 path started relayed in %d and ended direct in %d of %d runs (direct %v after the relayed connection, median); setup median cold %v, warm %v",
			r.completed, 2*tries, r.startedRelayed, r.direct, tries, ms(median(r.punch)), ms(median(r.cold)), ms(median(r.warm)))
		if r.direct == 0 {
			t.Error("the node-to-node path never went direct")
		}
	})

	// 2. alice@alpha (LAN 1) watches bob@beta's presence (LAN 2): the SUBSCRIBE goes
	// the way of a call, and the NOTIFYs come back through both NATs over the
	// overlay (record-routed by a1; b1 cannot reach alice's phone any other way):
	// open while bob's phone is registered, closed once it unregisters.
	t.Run("Presence", func(t *testing.T) {
		watch := lan.a1.ns.Start("a1-watch", b.bin, "watch", "--node", lan.a1.sip, "--as", lan.alice(), "--for", "10m", lan.bob())
		defer func() { _ = watch.Stop() }()
		line := func(what string, match func(string) bool) string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			l, err := watch.WaitFor(ctx, match)
			if err != nil {
				t.Fatalf("%s: %v; watch printed:\n%s", what, err, strings.Join(watch.Lines(), "\n"))
			}
			return l
		}
		t0 := time.Now()
		line("the SUBSCRIBE answered 200", func(l string) bool { return strings.Contains(l, "subscribed to presence of "+lan.bob()+": 200") })
		open := line("a NOTIFY with bob open", func(l string) bool { return strings.HasPrefix(l, "notify active") && strings.Contains(l, ": open (") })
		t.Logf("RESULT presence across both NATs: %q %v after the SUBSCRIBE was sent", open, ms(time.Since(t0)))
		_ = lan.b1.ua.Stop() // hiersip answer unregisters on SIGTERM
		t1 := time.Now()
		closed := line("a NOTIFY with bob closed", func(l string) bool { return strings.Contains(l, ": closed (") })
		t.Logf("RESULT presence across both NATs: %q %v after bob's phone stopped", closed, ms(time.Since(t1)))
		lan.b1.startUA(lan.bob())
	})

	// 3. A node alone behind NAT 3 joins alpha through configured peers
	// (the relayed addresses of a1 and a2), then, restarted, through its
	// peer cache; it can be called from its domain and from beta. The first
	// time its hole punching is off, so that it stays reachable only through
	// the relay, as when punching fails: the domain overlay must work over
	// relayed connections (kad-dht alone stalled every store that asked c1,
	// and alice's REGISTERs on a1 timed out).
	t.Run("LoneNode", func(t *testing.T) {
		var peers []string
		for _, nd := range []*hsNode{lan.a1, lan.a2} {
			addrs, err := nd.relayed()
			if err != nil {
				t.Fatal(err)
			}
			peers = append(peers, addrs...)
		}
		for _, how := range []string{"configured", "cached"} {
			cfg := nodeConfig{domain: "alpha", optOut: true, sip: true, holePunching: how == "cached", cache: true, data: "c1"}
			if how == "configured" {
				cfg.peers = peers
			}
			c1 := b.startNode(b.ns["c1"], "c1-"+how, cfg)
			t0 := time.Now()
			eventually(t, 45*time.Second, "c1 joins alpha through "+how+" peers", func() error {
				if s, err := c1.status(); err != nil || !s.Joined {
					return fmt.Errorf("not joined %v", err)
				}
				return nil
			})
			t.Logf("RESULT lone node joined alpha through %s peers in %v (hole punching %v)", how, ms(time.Since(t0)), cfg.holePunching)
			c1.startUA("sip:carol@alpha")
			for _, from := range []struct {
				nd  *hsNode
				aor string
			}{{lan.a1, lan.alice()}, {lan.b1, lan.bob()}} {
				var res callResult
				eventually(t, 30*time.Second, from.aor+" calls carol@alpha", func() (err error) {
					res, err = placeCall(from.nd, from.aor, "sip:carol@alpha")
					return err
				})
				t.Logf("RESULT %s → carol@alpha (alone behind NAT 3, %s peers): setup %v, BYE %v", from.aor, how, ms(res.setup), ms(res.bye))
			}
			if !cfg.holePunching {
				s, err := lan.a1.status()
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range s.Peers {
					if p.PeerID == c1.id && p.Direct > 0 {
						t.Errorf("a1–c1 went direct (%s) with c1's hole punching off", p.Path)
					}
				}
			}
			c1.stop()
		}
	})

	// 4. Relay only: a new generation with hole punching off; the
	// connections between the LANs stay relayed and calls still complete.
	// P now cuts every relayed connection after relayLimit.
	lan.stop()
	b.p.stop()
	const relayLimit = 4 * time.Second
	b.startPublic(relayLimit)
	lan = b.startLANs("gamma", "delta", false)
	t.Run("RelayOnly", func(t *testing.T) {
		const tries = 2
		r := interDomainCalls(t, lan, tries, false)
		t.Logf("RESULT relay only: %d of %d calls completed; setup median cold %v, warm %v", r.completed, 2*tries, ms(median(r.cold)), ms(median(r.warm)))
		if r.direct > 0 {
			t.Errorf("the path went direct %d times with hole punching off", r.direct)
		}
	})
	// A call longer than the relay's limit: its BYE, node to node, needs a
	// new relayed connection after P cut the first.
	t.Run("LongCall", func(t *testing.T) {
		disconnectAcross(t, lan)
		mark := len(lan.a1.proc.Lines())
		hold := 3 * relayLimit
		out, err := lan.a1.cli(hold+40*time.Second, "call", "--node", lan.a1.sip, "--as", lan.alice(), "--duration", hold.String(), "--timeout", "15s", lan.bob())
		if err != nil {
			t.Fatal(err)
		}
		var cut int
		for _, l := range lan.a1.proc.Lines()[mark:] {
			var r logRecord
			if json.Unmarshal([]byte(l), &r) == nil && r.Msg == "connection closed" && r.Path == "relayed" && (r.Remote == lan.b1.id || r.Remote == lan.b2.id) {
				cut++
			}
		}
		m := byeRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no BYE answered after %v:\n%s", hold, out)
		}
		t.Logf("RESULT call held %v through relays limited to %v: BYE answered in %s; %d relayed connections of a1 to LAN 2 closed meanwhile", hold, relayLimit, m[1], cut)
		if cut == 0 {
			t.Errorf("no relayed connection was cut during the call: the relay limit did not apply")
		}
	})
	lan.stop()
	b.p.stop()
}

// TestNATBedCleanupOnFailure runs a NAT test bed in a child test process
// that fails on purpose while its nodes run, and checks that nothing of it
// is left: namespaces, interfaces, processes.
func TestNATBedCleanupOnFailure(t *testing.T) {
	if os.Getenv("NATBED_FAIL_CHILD") == "1" {
		b := newNATBed(t)
		b.startPublic(0)
		nd := b.startNode(b.ns["a1"], "a1", nodeConfig{domain: "alpha", mdns: true, holePunching: true, sip: true})
		fmt.Printf("BED prefix=%s bin=%s logs=%s\n", b.n.Prefix(), b.bin, b.n.LogDir())
		t.Fatalf("deliberate failure with %s and P running", nd.label)
	}
	testenv.RequireNetns(t)
	// Not -test.v: as in CI, the failed test's report is printed after its
	// cleanups.
	cmd := exec.Command(os.Args[0], "-test.run=^TestNATBedCleanupOnFailure$", "-test.count=1")
	cmd.Env = append(os.Environ(), "NATBED_FAIL_CHILD=1")
	out, err := cmd.CombinedOutput()
	m := regexp.MustCompile(`BED prefix=(\S+) bin=(\S+) logs=(\S+)`).FindStringSubmatch(string(out))
	if err == nil || m == nil || !strings.Contains(string(out), "deliberate failure") {
		t.Fatalf("the child test did not fail as planned (%v):\n%s", err, out)
	}
	if !strings.Contains(string(out), "logs kept in "+m[3]) {
		t.Errorf("the failed child did not keep its logs in %s:\n%s", m[3], out)
	}
	if _, err := os.Stat(filepath.Join(m[3], "a1.log")); err != nil {
		t.Errorf("a1's log was not kept: %v", err)
	}
	// The process logs come before the failure message, which CI shows
	// when it shows only the end of the output.
	dump, fail := strings.Index(string(out), "last lines of "+filepath.Join(m[3], "a1.log")), strings.LastIndex(string(out), "deliberate failure")
	if dump < 0 || dump > fail {
		t.Errorf("the failure message is not after the process logs (log dump at byte %d, failure at %d):\n%s", dump, fail, out)
	}
	_ = os.RemoveAll(m[3])
	checkNothingLeft(t, m[1], m[2])
	t.Logf("the child's test bed %s failed as planned, kept its logs and left nothing behind", m[1])
}

// natBenchRuns is the number of runs of each figure of BenchmarkNAT.
const natBenchRuns = 10

// BenchmarkNAT measures on the NAT test bed, as root, over natBenchRuns
// runs each (medians, reported as custom metrics; ns/op is meaningless):
// the time from the relayed connection between the caller's and callee's
// nodes to the direct one made by hole punching, the setup time (INVITE to
// 200 at the calling UA) of alice@LAN 1 → bob@LAN 2 calls that start on
// relayed connections (cold) and that run on direct ones (warm), and the
// same with hole punching off (relay only). Run it once:
//
//	go test -run '^$' -bench BenchmarkNAT -benchtime 1x -v ./integration
func BenchmarkNAT(b *testing.B) {
	var bed *natBed
	b.Cleanup(func() {
		if bed != nil {
			checkNothingLeft(b, bed.n.Prefix(), bed.bin)
		}
	})
	bed = newNATBed(b)
	bed.startPublic(0)
	lan := bed.startLANs("alpha", "beta", true)
	hp := interDomainCalls(b, lan, natBenchRuns, true)
	lan.stop()
	lan = bed.startLANs("gamma", "delta", false)
	ro := interDomainCalls(b, lan, natBenchRuns, false)
	lan.stop()
	b.Logf("RESULT hole punching on, %d runs: %d of %d calls completed; a1–b1 started relayed in %d, ended direct in %d runs; direct connection %v after the relayed one (median of %d); call setup median: cold (relayed, punching) %v, warm (direct) %v",
		natBenchRuns, hp.completed, 2*natBenchRuns, hp.startedRelayed, hp.direct, ms(median(hp.punch)), len(hp.punch), ms(median(hp.cold)), ms(median(hp.warm)))
	b.Logf("RESULT relay only, %d runs: %d of %d calls completed; call setup median: cold %v, warm %v (BYE median %v)",
		natBenchRuns, ro.completed, 2*natBenchRuns, ms(median(ro.cold)), ms(median(ro.warm)), ms(median(ro.byes)))
	msOf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(msOf(median(hp.punch)), "ms-direct-after-relayed")
	b.ReportMetric(msOf(median(hp.cold)), "ms-setup-cold")
	b.ReportMetric(msOf(median(hp.warm)), "ms-setup-direct")
	b.ReportMetric(msOf(median(ro.cold)), "ms-setup-relayed-cold")
	b.ReportMetric(msOf(median(ro.warm)), "ms-setup-relayed-warm")
	b.ReportMetric(float64(hp.direct), "runs-direct")
}
