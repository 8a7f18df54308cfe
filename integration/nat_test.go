package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/netns"
	"github.com/hiersip/hiersip/integration/testenv"
)

// The NAT test bed (DESIGN §5): an "internet" bridge with public-looking
// addresses (1.2.0.0/24, no link to the machine's network) carrying a public
// node P (relay, AutoNAT server, global seed) and three NAT routers; behind
// router 1 the LAN of domain alpha (a1, a2), behind router 2 the LAN of
// domain beta (b1, b2), behind router 3 a lone node of alpha (c1). LAN nodes
// find each other by mDNS, the global overlay and their relay through P.
//
//	        P 1.2.0.1
//	           │ inet 1.2.0.0/24
//	  ┌────────┼──────────────┐
//	r1 .11    r2 .12         r3 .13      (MASQUERADE + drop new inbound)
//	  │ 10.1.0/24  │ 10.2.0/24    │ 10.3.0/24
//	a1 a2       b1 b2           c1
//
// natNode is one natnode process.
type natNode struct {
	t     *testing.T
	label string
	proc  *netns.Proc
	id    string
	addrs []string
	fifo  string
}

// natBed is the test bed's network and helper binary.
type natBed struct {
	t              *testing.T
	n              *netns.Net
	bin            string
	pub            *netns.Namespace
	ns             map[string]*netns.Namespace
	p              *natNode
	relayAddrs     []string
	gen            int
	known          string
	startupTimeout time.Duration
}

func newNATBed(t *testing.T) *natBed {
	t.Helper()
	testenv.RequireRoot(t)
	n := netns.New(t)
	b := &natBed{t: t, n: n, ns: map[string]*netns.Namespace{}, known: "alpha,beta,gamma,delta,pub", startupTimeout: 30 * time.Second}
	b.bin = buildHelper(t, "github.com/hiersip/hiersip/integration/internal/natnode")

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
		}
		for i, h := range l.hosts {
			ns := n.Namespace(h)
			addr := fmt.Sprintf("%s.%d/24", l.lan, i+2)
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

// start runs natnode in ns with args and waits for READY.
func (b *natBed) start(ns *netns.Namespace, label string, args ...string) *natNode {
	b.t.Helper()
	fifo := filepath.Join(b.t.TempDir(), label+".ctl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		b.t.Fatal(err)
	}
	args = append([]string{"-control", fifo, "-known", b.known}, args...)
	nd := &natNode{t: b.t, label: label, fifo: fifo, proc: ns.Start(label, b.bin, args...)}
	ctx, cancel := context.WithTimeout(context.Background(), b.startupTimeout)
	defer cancel()
	line, err := nd.proc.WaitFor(ctx, func(l string) bool { return strings.HasPrefix(l, "READY ") || strings.HasPrefix(l, "ERROR") })
	if err != nil || !strings.HasPrefix(line, "READY ") {
		b.t.Fatalf("%s did not start: %q, %v", label, line, err)
	}
	nd.id = strings.Fields(line)[1]
	nd.addrs = strings.Split(field(line, "addrs"), ",")
	return nd
}

// startPublic starts P and returns its addresses on the internet.
func (b *natBed) startPublic() {
	b.t.Helper()
	b.p = b.start(b.pub, "P", "-domain", "pub", "-public", "-seed", "-no-mdns",
		"-listen", "/ip4/1.2.0.1/tcp/4001,/ip4/1.2.0.1/udp/4001/quic-v1")
	for _, a := range b.p.addrs {
		if strings.HasPrefix(a, "/ip4/1.2.0.1/") {
			b.relayAddrs = append(b.relayAddrs, a)
		}
	}
	if len(b.relayAddrs) == 0 {
		b.t.Fatalf("P has no address on the internet: %v", b.p.addrs)
	}
}

// startLAN starts a NATed node of domain with user (an AOR, may be empty).
func (b *natBed) startLAN(host, domain, user string, extra ...string) *natNode {
	b.t.Helper()
	relays := strings.Join(b.relayAddrs, ",")
	args := []string{"-domain", domain, "-reach", "private", "-relays", relays, "-global-peers", relays}
	if user != "" {
		args = append(args, "-user", user)
	}
	return b.start(b.ns[host], fmt.Sprintf("%s-g%d", host, b.gen), append(args, extra...)...)
}

// field returns the value of key=value in line (values in quotes may hold
// spaces).
func field(line, key string) string {
	i := strings.Index(" "+line, " "+key+"=")
	if i < 0 {
		return ""
	}
	rest := line[i+len(key)+1:]
	if strings.HasPrefix(rest, "\"") {
		if s, err := strconv.QuotedPrefix(rest); err == nil {
			u, _ := strconv.Unquote(s)
			return u
		}
	}
	v, _, _ := strings.Cut(rest, " ")
	return v
}

// send writes a command line to the node's control FIFO and returns the
// number of output lines before it, for await.
func (nd *natNode) send(cmd string) int {
	nd.t.Helper()
	mark := len(nd.proc.Lines())
	f, err := os.OpenFile(nd.fifo, os.O_WRONLY, 0)
	if err != nil {
		nd.t.Fatalf("%s: control: %v", nd.label, err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, cmd); err != nil {
		nd.t.Fatalf("%s: control: %v", nd.label, err)
	}
	return mark
}

// await returns the first line after mark that starts with one of the
// prefixes, or an error after d.
func (nd *natNode) await(mark int, d time.Duration, prefixes ...string) (string, error) {
	deadline := time.Now().Add(d)
	for {
		lines := nd.proc.Lines()
		for _, l := range lines[min(mark, len(lines)):] {
			for _, p := range prefixes {
				if strings.HasPrefix(l, p) {
					return l, nil
				}
			}
		}
		select {
		case <-nd.proc.Done():
			return "", fmt.Errorf("%s exited while awaiting %v", nd.label, prefixes)
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s: no %v within %v", nd.label, prefixes, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (nd *natNode) mustAwait(mark int, d time.Duration, prefixes ...string) string {
	nd.t.Helper()
	l, err := nd.await(mark, d, prefixes...)
	if err != nil {
		nd.t.Fatal(err)
	}
	return l
}

// relayed returns the node's first relayed TCP address (any if none on TCP).
func (nd *natNode) relayed() string {
	var any string
	for _, l := range nd.proc.Lines() {
		if a, ok := strings.CutPrefix(l, "RELAYED "); ok {
			if strings.Contains(a, "/tcp/") {
				return a
			}
			if any == "" {
				any = a
			}
		}
	}
	return any
}

// allRelayed returns all of the node's relayed addresses, comma-separated.
func (nd *natNode) allRelayed() string {
	var out []string
	for _, l := range nd.proc.Lines() {
		if a, ok := strings.CutPrefix(l, "RELAYED "); ok {
			out = append(out, a)
		}
	}
	return strings.Join(out, ",")
}

// paths asks nd for its connections and returns peer ID → path.
func (nd *natNode) paths() map[string]string {
	nd.t.Helper()
	mark := nd.send("paths")
	nd.mustAwait(mark, 5*time.Second, "PATHS-END")
	out := map[string]string{}
	for _, l := range nd.proc.Lines()[mark:] {
		if strings.HasPrefix(l, "PATH ") {
			out[field(l, "peer")] = field(l, "path")
		}
	}
	return out
}

// waitAll waits until every node printed a line with prefix.
func waitAll(t *testing.T, d time.Duration, prefix string, nodes ...*natNode) {
	t.Helper()
	for _, nd := range nodes {
		if _, err := nd.await(0, d, prefix); err != nil {
			t.Fatal(err)
		}
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// lanNodes is one generation of the nodes of LANs 1 and 2: domain da on LAN
// 1, db on LAN 2. Each generation has domains of its own, so that the proxy
// records of an earlier one (alive up to a minute) do not mislead it.
type lanNodes struct {
	a1, a2, b1, b2 *natNode
	da, db         string
}

func (l lanNodes) all() []*natNode { return []*natNode{l.a1, l.a2, l.b1, l.b2} }

func (b *natBed) startLANs(da, db string, extra ...string) lanNodes {
	b.t.Helper()
	b.gen++
	l := lanNodes{
		a1: b.startLAN("a1", da, "sip:alice@"+da, extra...),
		a2: b.startLAN("a2", da, "sip:ann@"+da, extra...),
		b1: b.startLAN("b1", db, "sip:bob@"+db, extra...),
		b2: b.startLAN("b2", db, "sip:bea@"+db, extra...),
		da: da, db: db,
	}
	waitAll(b.t, 30*time.Second, "RELAYED ", l.all()...)
	waitAll(b.t, 30*time.Second, "REGISTERED ", l.all()...)
	// One proxy per domain.
	deadline := time.Now().Add(30 * time.Second)
	for _, pair := range [][2]*natNode{{l.a1, l.a2}, {l.b1, l.b2}} {
		for {
			if _, err := pair[0].await(0, 0, "PROXY "); err == nil {
				break
			}
			if _, err := pair[1].await(0, 0, "PROXY "); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.t.Fatalf("no proxy elected among %s, %s", pair[0].label, pair[1].label)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitGlobal(b.t, l)
	return l
}

// waitGlobal waits until a proxy of each domain resolves the other domain's
// proxies in the global overlay (a new proxy's first publication can miss
// while its global overlay is still empty; it re-publishes every 20 s).
func waitGlobal(t *testing.T, l lanNodes) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for _, c := range []struct {
		nodes  []*natNode
		domain string
	}{{[]*natNode{l.a1, l.a2}, l.db}, {[]*natNode{l.b1, l.b2}, l.da}} {
		for ok := false; !ok; {
			for _, nd := range c.nodes {
				line := nd.mustAwait(nd.send("lookup "+c.domain), 15*time.Second, "LOOKUP-")
				if strings.HasPrefix(line, "LOOKUP-OK ") {
					ok = true
					break
				}
			}
			if !ok && time.Now().After(deadline) {
				t.Fatalf("the global overlay never resolved %s", c.domain)
			}
			if !ok {
				time.Sleep(time.Second)
			}
		}
	}
}

// disconnectAcross closes every connection between the alpha and beta LANs,
// so that the next exchange starts through the relay again.
func disconnectAcross(l lanNodes) {
	for _, pair := range [][2][]*natNode{{{l.a1, l.a2}, {l.b1, l.b2}}, {{l.b1, l.b2}, {l.a1, l.a2}}} {
		for _, from := range pair[0] {
			for _, to := range pair[1] {
				if l := from.mustAwait(from.send("disconnect "+to.id), 10*time.Second, "DISCONNECTED "); strings.Contains(l, "timeout") {
					from.t.Logf("%s: closing the connections to %s hangs", from.label, to.label)
				}
			}
		}
	}
}

// crossPaths reports the connections between the two LANs, as seen by the
// alpha nodes: "a1-b2=direct" etc.
func crossPaths(l lanNodes) (desc string, direct, relayed int) {
	var parts []string
	for _, from := range []*natNode{l.a1, l.a2} {
		ps := from.paths()
		for _, to := range []*natNode{l.b1, l.b2} {
			if p, ok := ps[to.id]; ok {
				parts = append(parts, from.label+"→"+to.label+"="+p)
				if strings.Contains(p, "direct") {
					direct++
				} else {
					relayed++
				}
			}
		}
	}
	return strings.Join(parts, " "), direct, relayed
}

// call places a call from caller to target and returns the setup time in ms.
func call(t *testing.T, caller *natNode, target string) (float64, error) {
	t.Helper()
	mark := caller.send("call " + target)
	line, err := caller.await(mark, 25*time.Second, "CALL-OK ", "CALL-FAIL ")
	if err != nil {
		return 0, err
	}
	if strings.HasPrefix(line, "CALL-FAIL ") {
		return 0, fmt.Errorf("%s: %s", caller.label, line)
	}
	bye, err := caller.await(mark, 25*time.Second, "BYE-OK", "BYE-FAIL")
	if err != nil || bye != "BYE-OK" {
		// In-dialog requests go node to node (draft §7 step 11), through
		// the relays' circuits when the nodes never met (node.relayRouting).
		t.Errorf("%s: BYE after the call to %s: %q %v", caller.label, target, bye, err)
	}
	return strconv.ParseFloat(field(line, "setup_ms"), 64)
}

// TestNAT runs the NAT test bed: hole punching measured with plain libp2p
// streams, calls between two NATed domains with hole punching and relay
// only, and a lone NATed node joining its domain through configured peers.
func TestNAT(t *testing.T) {
	b := newNATBed(t)
	b.startPublic()
	lan := b.startLANs("alpha", "beta")
	t.Logf("P=%s alpha: a1=%s a2=%s beta: b1=%s b2=%s", b.p.id, lan.a1.id, lan.a2.id, lan.b1.id, lan.b2.id)

	// 1. Hole punching: a1 dials b2's relayed address; the relayed
	// connection must be upgraded to a direct one.
	t.Run("HolePunch", func(t *testing.T) {
		target := lan.b2.relayed()
		var directMs []float64
		tries := 4
		for i := range tries {
			mark := lan.a1.send("dial " + target)
			line, err := lan.a1.await(mark, 30*time.Second, "DIAL-OK ", "DIAL-FAIL ")
			if err != nil || strings.HasPrefix(line, "DIAL-FAIL") {
				t.Errorf("try %d: %q %v", i, line, err)
				continue
			}
			t.Logf("try %d: %s", i, line)
			if d, _ := strconv.ParseFloat(field(line, "direct_ms"), 64); d >= 0 {
				c, _ := strconv.ParseFloat(field(line, "connect_ms"), 64)
				directMs = append(directMs, d-c)
			}
			disconnectAcross(lan)
		}
		t.Logf("RESULT hole punching: %d of %d tries went direct; direct connection %.1f ms (median) after the relayed one was usable",
			len(directMs), tries, median(directMs))
		if len(directMs) == 0 {
			t.Error("hole punching never produced a direct connection")
		}
	})

	// 2. alice@alpha calls bob@beta through both NATs (caller node → alpha
	// proxy → beta proxy → callee node); cold calls start on the relay,
	// warm ones reuse the punched connection.
	t.Run("InterDomainCall", func(t *testing.T) {
		interDomainCalls(t, lan, true)
	})

	// 3. A node alone behind its NAT joins alpha through configured peers
	// (the relayed addresses of a1 and a2) and can be called.
	t.Run("LoneNode", func(t *testing.T) {
		// Both transports: hole punching needs an observed address on a
		// transport both ends have; a node that reached its relay by TCP
		// only cannot punch to nodes that reached it by QUIC only.
		peers := lan.a1.allRelayed() + "," + lan.a2.allRelayed()
		c1 := b.start(b.ns["c1"], "c1", "-domain", "alpha", "-reach", "private", "-no-mdns", "-optout",
			"-relays", strings.Join(b.relayAddrs, ","), "-global-peers", strings.Join(b.relayAddrs, ","),
			"-peers", peers, "-user", "sip:carol@alpha")
		if _, err := c1.await(0, 30*time.Second, "JOINED "); err != nil {
			t.Fatalf("lone node did not join alpha: %v", err)
		}
		c1.mustAwait(0, 30*time.Second, "REGISTERED ")
		var ok int
		for i := range 3 {
			ms, err := call(t, lan.a1, "sip:carol@alpha")
			if err != nil {
				t.Logf("try %d: alice → carol: %v", i, err)
				time.Sleep(time.Second)
				continue
			}
			ok++
			t.Logf("RESULT alice@alpha (LAN 1) → carol@alpha (alone behind NAT 3): setup %.1f ms, a1→c1 %s",
				ms, lan.a1.paths()[c1.id])
			break
		}
		if ok == 0 {
			t.Error("the lone node could not be called from its domain")
		}
		if ms, err := call(t, lan.b1, "sip:carol@alpha"); err != nil {
			t.Errorf("bob@beta → carol@alpha (lone node, another domain): %v", err)
		} else {
			t.Logf("RESULT bob@beta → carol@alpha (lone node): setup %.1f ms", ms)
		}
		_ = c1.proc.Stop()
	})

	// 4. Relay only: the LAN nodes again, with hole punching disabled; the
	// connections between the LANs stay relayed and calls still complete.
	for _, nd := range lan.all() {
		_ = nd.proc.Stop()
	}
	lan = b.startLANs("gamma", "delta", "-no-holepunch")
	t.Run("RelayOnly", func(t *testing.T) {
		mark := lan.a1.send("dial " + lan.b2.relayed())
		line := lan.a1.mustAwait(mark, 30*time.Second, "DIAL-OK ", "DIAL-FAIL ")
		t.Logf("relay-only dial: %s", line)
		if field(line, "direct_ms") != "-1" || field(line, "now") != "relayed" {
			t.Errorf("hole punching disabled, yet: %s", line)
		}
		disconnectAcross(lan)
		interDomainCalls(t, lan, false)
	})
}

// interDomainCalls places cold and warm calls from alice on LAN 1 to bob on
// LAN 2 and
// reports setup times and paths; wantDirect requires a direct path in at
// least one try, !wantDirect requires relayed paths only.
func interDomainCalls(t *testing.T, lan lanNodes, wantDirect bool) {
	bob := "sip:bob@" + lan.db
	var cold, warm []float64
	directTries, okTries := 0, 0
	const tries = 3
	for i := range tries {
		ms, err := call(t, lan.a1, bob)
		if err != nil {
			t.Errorf("try %d: cold call %s → %s: %v", i, "alice@"+lan.da, bob, err)
			continue
		}
		okTries++
		cold = append(cold, ms)
		// Hole punching runs beside the relayed call; give it a moment.
		time.Sleep(500 * time.Millisecond)
		desc, direct, relayed := crossPaths(lan)
		if ms2, err := call(t, lan.a1, bob); err != nil {
			t.Errorf("try %d: warm call: %v", i, err)
		} else {
			warm = append(warm, ms2)
		}
		t.Logf("try %d: cold call %.1f ms; paths after it: %s", i, ms, desc)
		if direct > 0 {
			directTries++
		}
		if !wantDirect && direct > 0 {
			t.Errorf("try %d: direct connection with hole punching disabled: %s", i, desc)
		}
		if direct+relayed == 0 {
			t.Errorf("try %d: no connection between the LANs after the call", i)
		}
		disconnectAcross(lan)
	}
	mode := "hole punching on"
	if !wantDirect {
		mode = "relay only"
	}
	t.Logf("RESULT inter-domain calls alice@%s → bob@%s (%s): %d of %d completed, %d went direct; setup median cold (starts relayed) %.1f ms, warm %.1f ms",
		lan.da, lan.db, mode, okTries, tries, directTries, median(cold), median(warm))
	if wantDirect && okTries > 0 && directTries == 0 {
		t.Error("no call's path between the LANs went direct")
	}
}
