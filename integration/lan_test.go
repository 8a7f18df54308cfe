package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/integration/netns"
	"github.com/hiersip/hiersip/integration/softphone"
	"github.com/hiersip/hiersip/integration/testenv"
	"github.com/hiersip/hiersip/node"
)

// The README's "Two nodes on a LAN, and a softphone", followed literally: two machines
// (network namespaces m1, m2) on one LAN (a bridge), each running
//
//	hiersip node --domain pastry --sip-udp 0.0.0.0:5060 --sip-tcp 0.0.0.0:5060
//
// with the users file the README recommends (and, on m1, which serves the phones behind
// NAT, --sip-nat-keepalive 1s: the test's router forgets a UDP mapping after 3 s), and
// baresip phones registering with their node's LAN address: on machines of their own
// (alice, bob), on the node's own machine with outbound=sip:127.0.0.1:5060 (carol), behind
// a NAT router over UDP and TCP (dave, gina), and on IPv6-only machines (erin, frank). Each
// call is checked at both ends (the callee sees it established only with the ACK) and
// hung up (the callee sees the BYE). Last, m2 is killed (SIGKILL) and started again: bob,
// registered with it before, is called at once without registering again.
//
//	            LAN 192.0.2.0/24 and 2001:db8::/64
//	├─ m1 .10 ::10   node, carol on 127.0.0.1
//	├─ m2 .11 ::11   node
//	├─ pa .20        alice → m1
//	├─ pb .21        bob   → m2
//	├─ p6a ::20      erin  → m1 (IPv6 only)
//	├─ p6b ::21      frank → m2 (IPv6 only)
//	└─ r  .30        NAT router ── 198.18.5.0/24 ── pd .2: dave (UDP), gina (TCP) → m1
const (
	lanM1, lanM2     = "192.0.2.10", "192.0.2.11"
	lanM1v6, lanM2v6 = "2001:db8::10", "2001:db8::11"
	lanRealm         = "pastry"
	lanPassword      = "secret"
	natUDPTimeout    = 3 // seconds, the NAT router's UDP mapping timeout
)

// lanBed is the LAN test bed.
type lanBed struct {
	t     *testing.T
	n     *netns.Net
	bin   string
	users string
	ns    map[string]*netns.Namespace
	nodes map[string]*lanNode
}

// lanNode is one `hiersip node` process started as the README says, on a machine whose
// home directory holds its data directory (~/.local/share/hiersip).
type lanNode struct {
	label string
	ns    *netns.Namespace
	home  string
	args  []string
	proc  *netns.Proc
	gen   int
}

// lanPhone is a baresip phone with its account.
type lanPhone struct {
	name, aor string
	ns        *netns.Namespace
	b         *softphone.Baresip
}

func newLANBed(t *testing.T) *lanBed {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "baresip")
	n := netns.New(t)
	b := &lanBed{t: t, n: n, ns: map[string]*netns.Namespace{}, nodes: map[string]*lanNode{}}
	b.bin = buildHelper(t, "github.com/hiersip/hiersip/cmd/hiersip")
	t.Logf("LAN test bed %s: logs in %s (kept on failure)", n.Prefix(), n.LogDir())

	// The users file as the README makes it: hiersip users add (both hashes and a user
	// key per user; the node challenges with MD5, which baresip 1.0 needs).
	b.users = filepath.Join(n.LogDir(), "users")
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "gina", "linda"} {
		add := exec.Command(b.bin, "users", "add", u, "--file", b.users, "--realm", lanRealm, "--password-stdin")
		add.Stdin = strings.NewReader(lanPassword + "\n")
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("hiersip users add %s: %v\n%s", u, err, out)
		}
	}

	lan := n.Bridge("lan")
	for _, m := range []struct{ name, v4, v6 string }{
		{"m1", lanM1, lanM1v6}, {"m2", lanM2, lanM2v6},
		{"pa", "192.0.2.20", ""}, {"pb", "192.0.2.21", ""},
		{"p6a", "", "2001:db8::20"}, {"p6b", "", "2001:db8::21"},
	} {
		ns := n.Namespace(m.name)
		ns.Sysctl("net/ipv6/conf/default/accept_dad", "0")
		ns.Sysctl("net/ipv6/conf/all/accept_dad", "0")
		cidr := ""
		if m.v4 != "" {
			cidr = m.v4 + "/24"
		}
		lan.Attach(ns, "eth0", cidr)
		if m.v6 != "" {
			ns.IP("addr", "add", m.v6+"/64", "dev", "eth0", "nodad")
		}
		b.ns[m.name] = ns
	}
	// A home router: dave's phone at 198.18.5.2 behind NAT (MASQUERADE) to 192.0.2.30.
	r := n.Namespace("r")
	lan.Attach(r, "wan0", "192.0.2.30/24")
	pd := n.Namespace("pd")
	n.Link(r, "lan0", "198.18.5.1/24", pd, "eth0", "198.18.5.2/24")
	pd.AddRoute("default", "198.18.5.1")
	r.NAT("wan0")
	// The router forgets a UDP mapping after 3 s without traffic (Linux: 30 s, 120 s once
	// answered; home routers often less): only keep-alives keep the phone reachable.
	r.Sysctl("net/netfilter/nf_conntrack_udp_timeout", strconv.Itoa(natUDPTimeout))
	r.Sysctl("net/netfilter/nf_conntrack_udp_timeout_stream", strconv.Itoa(natUDPTimeout))
	b.ns["r"], b.ns["pd"] = r, pd
	return b
}

// startNode runs the README's command on machine m with the users file.
func (b *lanBed) startNode(m string, extra ...string) *lanNode {
	b.t.Helper()
	nd := b.nodes[m]
	if nd == nil {
		nd = &lanNode{label: m, ns: b.ns[m], home: filepath.Join(b.n.LogDir(), m+".home")}
		if err := os.MkdirAll(nd.home, 0o700); err != nil {
			b.t.Fatal(err)
		}
		b.nodes[m] = nd
	}
	nd.gen++
	nd.args = append([]string{"HOME=" + nd.home, "XDG_DATA_HOME=", b.bin,
		"node", "--domain", "pastry", "--sip-udp", "0.0.0.0:5060", "--sip-tcp", "0.0.0.0:5060",
		"--sip-users-file", b.users, "--log-format", "json"}, extra...)
	if os.Getenv("LANTEST_DEBUG") != "" {
		nd.args = append(nd.args, "--log-level", "debug")
	}
	nd.proc = nd.ns.Start(fmt.Sprintf("%s-node%d", m, nd.gen), "env", nd.args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := nd.proc.WaitFor(ctx, func(l string) bool { return logMsg(l) == "node started" }); err != nil {
		b.t.Fatalf("%s did not start: %v", m, err)
	}
	return nd
}

// status reads the node's /status in its machine.
func (nd *lanNode) status(bin string) (node.Status, error) {
	var s node.Status
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := nd.ns.Command(ctx, bin, "status", "--json", "--admin", "http://127.0.0.1:8080").CombinedOutput()
	if err != nil {
		return s, fmt.Errorf("%s: status: %w: %s", nd.label, err, out)
	}
	return s, json.Unmarshal(out, &s)
}

// connected waits until a and b are connected.
func (b *lanBed) connected(x, y *lanNode) {
	b.t.Helper()
	eventually(b.t, 30*time.Second, x.label+" and "+y.label+" connected", func() error {
		sx, err := x.status(b.bin)
		if err != nil {
			return err
		}
		sy, err := y.status(b.bin)
		if err != nil {
			return err
		}
		for _, p := range sx.Peers {
			if p.PeerID == sy.PeerID {
				return nil
			}
		}
		return fmt.Errorf("%s's peers: %v", x.label, sx.Peers)
	})
}

// phone starts baresip for user on machine m, registering with the node at nodeAddr
// (the outbound proxy) over transport, listening on listen.
func (b *lanBed) phone(user, m, nodeAddr, listen string, transport ...string) *lanPhone {
	b.t.Helper()
	ns := b.ns[m]
	p := &lanPhone{name: user, aor: "sip:" + user + "@bupt.pastry", ns: ns}
	tp := "udp"
	if len(transport) > 0 {
		tp = transport[0]
	}
	p.b = softphone.Start(b.t, softphone.Account{AOR: p.aor, Password: lanPassword, Node: nodeAddr},
		softphone.Options{
			Listen: listen, RegInt: 600, Transport: tp,
			Command: func(name string, args ...string) *exec.Cmd {
				return ns.Command(context.Background(), name, args...)
			},
			Dial: ns.Dial,
		})
	return p
}

// registered waits until the phone reports a successful registration.
func (p *lanPhone) registered(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.b.WaitFor(ctx, "200 OK"); err != nil {
		t.Fatalf("%s did not register: %v", p.name, err)
	}
}

// waitCount waits until baresip printed sub at least n times.
func (p *lanPhone) waitCount(ctx context.Context, sub string, n int) error {
	for {
		if strings.Count(p.b.Output(), sub) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s printed %q %d times, want %d: %w", p.name, sub, strings.Count(p.b.Output(), sub), n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// call makes from call to and checks that both ends see the call established (the callee
// only once the ACK arrived), then hangs up from the caller and checks that the callee sees
// the BYE.
func lanCall(t *testing.T, from, to *lanPhone, during ...func()) {
	t.Helper()
	// baresip prints "Call established" at the caller on the 200 OK, at the callee on the
	// ACK; "terminate call" when it hangs up, "session closed" when the BYE arrives.
	const est, hungUp, closed = "Call established", "terminate call", "session closed"
	nf, nt := strings.Count(from.b.Output(), est), strings.Count(to.b.Output(), est)
	cf, ct := strings.Count(from.b.Output(), hungUp), strings.Count(to.b.Output(), closed)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := from.b.Dial(ctx, to.aor); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		p *lanPhone
		n int
	}{{to, nt + 1}, {from, nf + 1}} {
		if err := w.p.waitCount(ctx, est, w.n); err != nil {
			t.Fatalf("%s → %s: %v", from.name, to.name, err)
		}
	}
	for _, f := range during {
		f()
	}
	// The callee's call must stay up: a missing ACK ends it after 32 s with a BYE; a
	// BYE that cannot reach the callee leaves it up.
	if err := from.b.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		p   *lanPhone
		sub string
		n   int
	}{{from, hungUp, cf + 1}, {to, closed, ct + 1}} {
		if err := w.p.waitCount(ctx, w.sub, w.n); err != nil {
			t.Fatalf("%s → %s, hangup: %v", from.name, to.name, err)
		}
	}
	t.Logf("%s → %s: established both ends, BYE delivered", from.name, to.name)
}

func TestLAN(t *testing.T) {
	b := newLANBed(t)
	// m1 serves the phones behind NAT: keep-alives every second, inside the router's 3 s.
	n1, n2 := b.startNode("m1", "--sip-nat-keepalive", "1s"), b.startNode("m2")
	b.connected(n1, n2)
	t.Run("Logs", func(t *testing.T) {
		// Bound to the wildcard address, a node says so, and which addresses it has.
		for _, nd := range []*lanNode{n1, n2} {
			for _, l := range nd.proc.Lines() {
				if logMsg(l) == "sip bridge started" && (strings.Contains(l, `[::]`) || !strings.Contains(l, "0.0.0.0:5060")) {
					t.Errorf("%s: %s", nd.label, l)
				}
			}
		}
	})

	at := func(host string) string { return net.JoinHostPort(host, "5060") }
	alice := b.phone("alice", "pa", at(lanM1), "0.0.0.0:5062")
	bob := b.phone("bob", "pb", at(lanM2), "0.0.0.0:5062")
	carol := b.phone("carol", "m1", "127.0.0.1:5060", "0.0.0.0:5062")
	for _, p := range []*lanPhone{alice, bob, carol} {
		p.registered(t)
	}

	t.Run("Calls", func(t *testing.T) {
		lanCall(t, alice, bob)
		lanCall(t, bob, alice)
	})
	t.Run("PhoneOnNodeMachine", func(t *testing.T) {
		lanCall(t, carol, bob)
		lanCall(t, bob, carol)
		lanCall(t, alice, carol)
	})
	var dave *lanPhone
	t.Run("BehindNAT", func(t *testing.T) {
		dave = b.phone("dave", "pd", at(lanM1), "0.0.0.0:5062")
		gina := b.phone("gina", "pd", at(lanM1), "0.0.0.0:5064", "tcp")
		dave.registered(t)
		gina.registered(t)
		lanCall(t, bob, dave)
		lanCall(t, dave, bob)
		lanCall(t, bob, gina)
		lanCall(t, gina, bob)
	})
	// linda runs linphonec (Debian's linphone-cli) behind the NAT router: it registers with
	// digest through the NAT, bob calls her and she calls bob, and each call carries audio
	// both ways (counted at m1, her node).
	t.Run("LinphoneBehindNAT", func(t *testing.T) {
		linda := softphone.StartLinphone(t, softphone.Account{AOR: "sip:linda@bupt.pastry", Password: lanPassword, Node: at(lanM1)},
			softphone.LinphoneOptions{SIPPort: 5066, RTPPorts: "42000-42019", Command: func(name string, args ...string) *exec.Cmd {
				return b.ns["pd"].Command(context.Background(), name, args...)
			}})
		eventually(t, 20*time.Second, "linda registered at m1 through the NAT", func() error {
			s, err := n1.status(b.bin)
			if err != nil {
				return err
			}
			for _, r := range s.Registrations {
				if r.AOR == "sip:linda@bupt.pastry" {
					return nil
				}
			}
			return errors.New("not registered")
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		audio := func(what string) {
			eventually(t, 15*time.Second, "audio both ways in "+what, func() error {
				s, err := n1.status(b.bin)
				if err != nil {
					return err
				}
				for _, m := range s.Media {
					if m.ToPeer >= 50 && m.ToPhone >= 50 {
						t.Logf("%s: m1 carried %d RTP packets from linda (%s), %d to her", what, m.ToPeer, m.Phone, m.ToPhone)
						return nil
					}
				}
				return fmt.Errorf("media %+v", s.Media)
			})
		}
		if err := bob.b.Dial(ctx, "sip:linda@bupt.pastry"); err != nil {
			t.Fatal(err)
		}
		if err := linda.WaitFor(ctx, "Call 1 with sip:bob@bupt.pastry connected"); err != nil {
			t.Fatal(err)
		}
		if err := linda.PlayTone(); err != nil {
			t.Fatal(err)
		}
		audio("bob → linda")
		if err := bob.b.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		if err := linda.WaitFor(ctx, "Call 1 with sip:bob@bupt.pastry ended"); err != nil {
			t.Fatal(err)
		}
		est := strings.Count(bob.b.Output(), "Call established")
		if err := linda.Command("call sip:bob@bupt.pastry"); err != nil {
			t.Fatal(err)
		}
		if err := bob.waitCount(ctx, "Call established", est+1); err != nil {
			t.Fatal(err)
		}
		if err := linda.WaitFor(ctx, "Call 2 with sip:bob@bupt.pastry connected"); err != nil {
			t.Fatal(err)
		}
		if err := linda.PlayTone(); err != nil {
			t.Fatal(err)
		}
		audio("linda → bob")
		if err := linda.Command("terminate"); err != nil {
			t.Fatal(err)
		}
		if err := linda.WaitFor(ctx, "Call 2 with sip:bob@bupt.pastry ended"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("NATKeepalive", func(t *testing.T) {
		if dave == nil {
			t.Skip("no phone behind NAT")
		}
		// Idle for three times the router's timeout: the mapping lives on keep-alives only.
		mapping := "src=198.18.5.2 dst=" + lanM1 + " sport=5062 dport=5060"
		for end := time.Now().Add(3 * natUDPTimeout * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
			table, err := b.ns["r"].Exec("cat", "/proc/net/nf_conntrack")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(table, mapping) {
				t.Fatalf("the router forgot dave's mapping (%s):\n%s", mapping, table)
			}
		}
		lanCall(t, bob, dave)
	})
	t.Run("IPv6", func(t *testing.T) {
		erin := b.phone("erin", "p6a", at(lanM1v6), "[::]:5062")
		frank := b.phone("frank", "p6b", at(lanM2v6), "[::]:5062")
		erin.registered(t)
		frank.registered(t)
		lanCall(t, erin, frank)
		lanCall(t, frank, erin)
		// Across address families: each end node gives its own phone an address of the
		// phone's family, and carries the media between them itself.
		audio := func() {
			for _, nd := range []*lanNode{n1, n2} {
				eventually(t, 10*time.Second, "audio both ways at "+nd.label, func() error {
					s, err := nd.status(b.bin)
					if err != nil {
						return err
					}
					for _, m := range s.Media {
						if m.ToPeer >= 50 && m.ToPhone >= 50 {
							t.Logf("%s: %d RTP packets from its phone (%s), %d to it", nd.label, m.ToPeer, m.Phone, m.ToPhone)
							return nil
						}
					}
					return fmt.Errorf("media %+v", s.Media)
				})
			}
		}
		lanCall(t, alice, frank, audio)
		lanCall(t, frank, alice, audio)
	})
	t.Run("RestartKeepsRegistrations", func(t *testing.T) {
		// A call first, so that m1 holds a SIP stream to m2 when m2 crashes.
		lanCall(t, alice, bob)
		regs := strings.Count(bob.b.Output(), "200 OK")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n2.proc.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		restart := time.Now()
		n2 = b.startNode("m2")
		b.connected(n1, n2)
		// m1 still holds the QUIC connection to the crashed process, which looks open for
		// 30 s: it must find it dead, or the call goes there.
		eventually(t, 10*time.Second, "m1 to drop its connections to the crashed m2", func() error {
			s1, err := n1.status(b.bin)
			if err != nil {
				return err
			}
			s2, err := n2.status(b.bin)
			if err != nil {
				return err
			}
			for _, c := range s1.Connections {
				if c.PeerID == s2.PeerID && c.Opened.Before(restart) {
					return fmt.Errorf("connection %s opened %v", c.Addr, c.Opened)
				}
			}
			return nil
		})
		lanCall(t, alice, bob)
		if got := strings.Count(bob.b.Output(), "200 OK"); got != regs {
			t.Fatalf("bob registered again (%d → %d 200 OK): the call proves nothing", regs, got)
		}
	})
}
