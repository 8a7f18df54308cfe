package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipua"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pspb "github.com/libp2p/go-libp2p-pubsub/pb"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"
)

// outsider is an attacker's peer: its own host and keys, speaking hiersip's
// protocols with its own code.
type outsider struct {
	t  testing.TB
	h  host.Host
	ps *pubsub.PubSub
}

func newOutsider(t testing.TB, connect ...*Node) *outsider {
	t.Helper()
	o := &outsider{t: t, h: newTestHost(t)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var err error
	if o.ps, err = pubsub.NewGossipSub(ctx, o.h); err != nil {
		t.Fatal(err)
	}
	for _, n := range connect {
		if err := o.h.Connect(context.Background(), peer.AddrInfo{ID: n.ID(), Addrs: n.Host().Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// acceptAll is the outsider's DHT validator: it stores anything and keeps
// its own forgeries (records signed by it) over anything else.
type acceptAll struct{ self peer.ID }

func (acceptAll) Validate(string, []byte) error { return nil }

func (a acceptAll) Select(_ string, vs [][]byte) (int, error) {
	for i, v := range vs {
		if b, err := domains.OpenBinding(v); err == nil && b.Peer == a.self {
			return i, nil
		}
		if r, err := domains.OpenProxyRecord(v); err == nil && r.Signer == a.self {
			return i, nil
		}
	}
	return 0, nil
}

// joinDHT runs the outsider's own kad-dht in the overlay name (a domain or
// "global"): it becomes a member as far as the protocol goes.
func (o *outsider) joinDHT(name string) *dht.IpfsDHT {
	o.t.Helper()
	v := acceptAll{o.h.ID()}
	d, err := dht.New(o.h, dht.ProtocolPrefix(domains.ProtocolPrefix(name)), dht.Mode(dht.ModeServer),
		dht.Datastore(dssync.MutexWrap(ds.NewMapDatastore())), dht.DisableProviders(),
		dht.Validator(record.NamespacedValidator{domains.NSBinding: v, domains.NSLocalProxy: v, domains.NSOverlay: v}))
	if err != nil {
		o.t.Fatal(err)
	}
	o.t.Cleanup(func() { _ = d.Close() })
	for _, p := range o.h.Network().Peers() {
		_, _ = d.RoutingTable().TryAddPeer(p, true, false)
	}
	return d
}

// message encodes an election message from the outsider, with a fresh
// sequence number.
func (o *outsider) message(m election.Message) []byte {
	o.t.Helper()
	m.From = o.h.ID()
	if m.Seq == 0 {
		m.Seq = domains.SeqAt(time.Now())
	}
	b, err := election.Encode(m)
	if err != nil {
		o.t.Fatal(err)
	}
	return b
}

// hello sends raw bytes on /hiersip/hello/1.0.0 to n.
func (o *outsider) hello(n *Node, b []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := o.h.NewStream(ctx, n.ID(), election.HelloProtocol)
	if err != nil {
		o.t.Logf("hello stream to %s: %v", n.ID().ShortString(), err)
		return
	}
	_, _ = s.Write(b)
	_ = s.Close()
}

// topic joins the domain's election topic.
func (o *outsider) topic(domain string) *pubsub.Topic {
	o.t.Helper()
	tp, err := o.ps.Join(election.Topic(domain))
	if err != nil {
		o.t.Fatal(err)
	}
	return tp
}

// inject writes a raw gossipsub RPC carrying msg (someone else's signed
// message, replayed) on a new stream to p.
func (o *outsider) inject(p peer.ID, msg *pspb.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := o.h.NewStream(ctx, p, pubsub.GossipSubID_v11)
	if err != nil {
		return err
	}
	defer s.Close()
	rpc := &pspb.RPC{Publish: []*pspb.Message{msg}}
	data, err := proto.Marshal(rpc)
	if err != nil {
		return err
	}
	buf := binary.AppendUvarint(nil, uint64(len(data)))
	_, err = s.Write(append(buf, data...))
	return err
}

// refused returns a node's count of refusals of what for reason.
func refused(n *Node, what, reason string) float64 { return n.Metrics().refusedCount(what, reason) }

// sumRefused sums refusals over nodes.
func sumRefused(nodes []*Node, what, reason string) float64 {
	var s float64
	for _, n := range nodes {
		if !n.IsClosed() {
			s += refused(n, what, reason)
		}
	}
	return s
}

// domainSpec describes a domain of an attack test.
type domainSpec struct {
	name  string
	n     int
	auth  *testAuthority               // nil: open domain
	users string                       // users file contents (digest auth and user keys); "" none
	cfg   func(h host.Host, c *Config) // per-node changes
}

// carolsRingo is the two-node domain ringo with one user, carol (password carolpw, with a
// user key), from which the tests of devices, messages and presence call their users.
func carolsRingo(t testing.TB) domainSpec {
	return domainSpec{name: "ringo", n: 2, users: usersLine(t, "carol", "ringo", "carolpw", true)}
}

// carolAt is carol's UA at a member node of ds's ringo (carolsRingo).
func carolAt(t testing.TB, ds map[string][]*Node) *sipua.UA {
	return uaAt(t, "sip:carol@ringo", "carolpw", member(ds["ringo"]))
}

// startSpecDomains starts the domains with SIP bridges and elections, each
// domain's first node a global seed known to all, waits for their proxies
// and returns the nodes by domain. Nodes of enrolled domains get a
// certificate for sip:*@<domain>.
func startSpecDomains(t testing.TB, specs ...domainSpec) map[string][]*Node {
	t.Helper()
	ctx := context.Background()
	out := map[string][]*Node{}
	var seeds []string
	for _, sp := range specs {
		var usersFile string
		if sp.users != "" {
			usersFile = filepath.Join(t.TempDir(), "users")
			if err := os.WriteFile(usersFile, []byte(sp.users), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		var first string
		for i := range sp.n {
			h := newTestHost(t)
			cfg := Config{Domain: sp.name, Logger: quiet,
				SIP:       &SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", UsersFile: usersFile},
				Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
				Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: slices.Clone(seeds)}}
			if i == 0 {
				cfg.GlobalSeed = true
			} else {
				cfg.Bootstrap.Peers = []string{first}
			}
			if sp.auth != nil {
				cert, _ := sp.auth.issue(t, "sip:*@"+sp.name, h.ID(), time.Now().Add(time.Hour))
				cfg.Enrollment = &EnrollmentConfig{Authority: sp.auth.key.GetPublic(), Certificates: [][]byte{cert}}
			}
			if sp.cfg != nil {
				sp.cfg(h, &cfg)
			}
			nd, err := NewWithHost(ctx, h, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nd.Close() })
			if i == 0 {
				first = p2pAddr(t, h)
				seeds = append(seeds, first)
			}
			out[sp.name] = append(out[sp.name], nd)
		}
	}
	for _, sp := range specs {
		eventually(t, 30*time.Second, sp.name+" elects a proxy", func() error {
			_, err := serving(out[sp.name], min(2, sp.n-1))
			return err
		})
	}
	return out
}

// usersLine returns a users-file line for user in realm with password and,
// if key, a new user key.
func usersLine(t testing.TB, user, realm, password string, key bool) string {
	t.Helper()
	line := user + ":" + realm + ":" + sipbridge.HA1(user, realm, password)
	if key {
		k, err := domains.GenerateUserKey()
		if err != nil {
			t.Fatal(err)
		}
		s, err := domains.FormatUserKey(k)
		if err != nil {
			t.Fatal(err)
		}
		line += ":" + s
	}
	return line + "\n"
}

// uaAt registers a UA for aor at node n (with digest credentials if
// password is set).
func uaAt(t testing.TB, aor, password string, n *Node) *sipua.UA {
	t.Helper()
	opts := []sipua.UAOption{sipua.WithUALogger(quiet)}
	if password != "" {
		opts = append(opts, sipua.WithUACredentials(strings.SplitN(strings.TrimPrefix(aor, "sip:"), "@", 2)[0], password))
	}
	ua, err := sipua.NewUA(aor, n.Bridge().UDPAddr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := ua.Register(ctx, time.Hour); err != nil {
		t.Fatalf("REGISTER %s at %s: %v %v", aor, n.ID().ShortString(), res, err)
	}
	return ua
}

// callsAnswered places k calls from ua to target, each hung up at once, and
// returns how many were answered, and by whom the last was routed (the
// callee node's peer ID seen in the call's Contact, if any).
func callsAnswered(t testing.TB, from *sipua.UA, target string, k int) int {
	t.Helper()
	ok := 0
	for range k {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		c, err := from.Call(ctx, target)
		if err == nil {
			ok++
			_ = c.Hangup(ctx)
		} else {
			t.Logf("call %s: %v", target, err)
		}
		cancel()
	}
	return ok
}

func describe(ns []*Node) string {
	var b strings.Builder
	for _, n := range ns {
		if n.IsClosed() {
			continue
		}
		st := n.Election().State()
		fmt.Fprintf(&b, "\n  %s: %s epoch %d leader %s", n.ID().ShortString(), st.Role, st.Epoch, st.Leader.ShortString())
	}
	return b.String()
}
