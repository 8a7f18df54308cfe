package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipua"
	"github.com/libp2p/go-libp2p/core/peer"
)

// tracer collects the SIP messages nodes send to each other.
type tracer struct {
	mu  sync.Mutex
	evs []sipbridge.TraceEvent
}

func (tr *tracer) record(ev sipbridge.TraceEvent) {
	if !ev.Sent || ev.Peer == "" {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.evs = append(tr.evs, ev)
}

// hops returns the node-to-node sends of method (request lines starting
// with it) in the dialog callID, in order.
func (tr *tracer) hops(callID, method string) [][2]peer.ID {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	evs := slices.Clone(tr.evs)
	slices.SortStableFunc(evs, func(a, b sipbridge.TraceEvent) int { return a.At.Compare(b.At) })
	var out [][2]peer.ID
	for _, e := range evs {
		if e.CallID == callID && len(e.First) > len(method) && e.First[:len(method)+1] == method+" " {
			out = append(out, [2]peer.ID{e.Node, e.Peer})
		}
	}
	return out
}

// startCallDomains starts the named domains, n nodes each, with SIP bridges
// on loopback and the election on, and waits for their proxies.
func startCallDomains(t testing.TB, tr *tracer, n int, names ...string) map[string][]*Node {
	t.Helper()
	ctx := context.Background()
	var seeds []string
	out := map[string][]*Node{}
	for _, d := range names {
		var first string
		for i := range n {
			sip := &SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"}
			if tr != nil {
				sip.Options = []sipbridge.Option{sipbridge.WithTrace(tr.record)}
			}
			cfg := Config{Domain: d, ListenAddrs: loopback, Logger: quiet, SIP: sip,
				Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
				Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: slices.Clone(seeds)}}
			if i == 0 {
				cfg.GlobalSeed = true
			} else {
				cfg.Bootstrap.Peers = []string{first}
			}
			nd, err := New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nd.Close() })
			if i == 0 {
				first = p2pAddr(t, nd.Host())
				seeds = append(seeds, first)
			}
			out[d] = append(out[d], nd)
		}
	}
	for _, d := range names {
		eventually(t, 30*time.Second, d+" elects a proxy", func() error {
			p, err := serving(out[d], min(2, n-1))
			if err != nil {
				return err
			}
			// The duties follow the election: a node it demoted (one that
			// was alone for a while) has stepped down.
			for _, nd := range out[d] {
				if nd != p && nd.IsProxy() {
					return fmt.Errorf("%s still acts as proxy", nd.ID().ShortString())
				}
			}
			return nil
		})
	}
	return out
}

// member returns a node of nodes that is not a proxy.
func member(nodes []*Node) *Node {
	for i := len(nodes) - 1; i >= 0; i-- {
		if !nodes[i].IsClosed() && !nodes[i].IsProxy() {
			return nodes[i]
		}
	}
	return nodes[0]
}

func proxyOf(t testing.TB, nodes []*Node) *Node {
	t.Helper()
	p, err := serving(nodes, -1)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newUA(t testing.TB, aor string, at *Node) *sipua.UA {
	t.Helper()
	ua, err := sipua.NewUA(aor, at.Bridge().UDPAddr(), sipua.WithUALogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ua.Register(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	return ua
}

// call places a call, retrying while the overlays converge (404/480/503).
func call(t testing.TB, from *sipua.UA, to string) *sipua.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var c *sipua.Call
	eventually(t, 30*time.Second, fmt.Sprintf("%s calls %s", from.AOR(), to), func() (err error) {
		c, err = from.Call(ctx, to)
		return err
	})
	return c
}

func callStatus(t *testing.T, from *sipua.UA, to string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := from.Call(ctx, to)
	if err == nil {
		c.Hangup(ctx)
		return 200
	}
	var cf *sipua.ErrCallFailed
	if !errors.As(err, &cf) {
		t.Fatalf("call %s: %v", to, err)
	}
	t.Logf("call %s: %d %s", to, cf.Response.StatusCode, cf.Response.Reason)
	return cf.Response.StatusCode
}

// TestCallsBetweenThreeDomains places a call from every domain to every
// other and checks the path of draft Figure 3: caller's node → its proxy →
// the callee domain's proxy → callee's node for the INVITE, and the ACK and
// BYE straight from node to node.
func TestCallsBetweenThreeDomains(t *testing.T) {
	tr := &tracer{}
	names := []string{"pastry", "can", "chord"}
	ds := startCallDomains(t, tr, 3, names...)
	uas := map[string]*sipua.UA{}
	homes := map[string]*Node{}
	for _, d := range names {
		homes[d] = member(ds[d])
		uas[d] = newUA(t, fmt.Sprintf("sip:user@x.%s", d), homes[d])
	}
	ctx := context.Background()
	for _, from := range names {
		for _, to := range names {
			if from == to {
				continue
			}
			c := call(t, uas[from], fmt.Sprintf("sip:user@x.%s", to))
			if err := c.Hangup(ctx); err != nil {
				t.Fatalf("%s → %s: BYE: %v", from, to, err)
			}
			want := [][2]peer.ID{
				{homes[from].ID(), proxyOf(t, ds[from]).ID()},
				{proxyOf(t, ds[from]).ID(), proxyOf(t, ds[to]).ID()},
				{proxyOf(t, ds[to]).ID(), homes[to].ID()},
			}
			direct := [][2]peer.ID{{homes[from].ID(), homes[to].ID()}}
			eventually(t, 5*time.Second, from+" → "+to+" message path", func() error {
				if got := tr.hops(c.CallID, "INVITE"); !slices.Equal(got, want) {
					return fmt.Errorf("INVITE hops %v, want %v", got, want)
				}
				if got := tr.hops(c.CallID, "ACK"); !slices.Equal(got, direct) {
					return fmt.Errorf("ACK hops %v, want %v", got, direct)
				}
				if got := tr.hops(c.CallID, "BYE"); !slices.Equal(got, direct) {
					return fmt.Errorf("BYE hops %v, want %v", got, direct)
				}
				return nil
			})
		}
	}
	// Errors: unknown domain, unknown user of a known domain.
	if code := callStatus(t, uas["pastry"], "sip:nobody@x.can"); code != 404 {
		t.Errorf("unregistered callee: %d, want 404", code)
	}
	if code := callStatus(t, uas["pastry"], "sip:carol@x.nowhere"); code != 404 {
		t.Errorf("unknown domain: %d, want 404", code)
	}
	if _, err := uas["pastry"].Message(ctx, "sip:user@x.chord", "hello"); err != nil {
		t.Errorf("MESSAGE across domains: %v", err)
	}
}

// TestProxyFailureAndCalls kills the callee domain's proxy: established
// calls survive (their in-dialog requests go node to node), new calls go
// through the new proxy, and with every node of the domain gone callers get
// 503.
func TestProxyFailureAndCalls(t *testing.T) {
	ds := startCallDomains(t, nil, 3, "pastry", "can")
	bob := newUA(t, "sip:bob@bupt.pastry", member(ds["pastry"]))
	alice := newUA(t, "sip:alice@pku.can", member(ds["can"]))
	established := call(t, bob, "sip:alice@pku.can")

	old := proxyOf(t, ds["can"])
	old.Host().Close()
	old.Close()
	eventually(t, 30*time.Second, "can elects a new proxy", func() error {
		p, err := serving(ds["can"], -1)
		if err == nil && p == old {
			return errors.New("old proxy")
		}
		return err
	})
	ctx := context.Background()
	if err := established.Hangup(ctx); err != nil {
		t.Fatalf("BYE of a call established before the proxy died: %v", err)
	}
	c := call(t, bob, "sip:alice@pku.can")
	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("BYE after failover: %v", err)
	}
	_ = alice

	for _, nd := range ds["can"] {
		nd.Host().Close()
		nd.Close()
	}
	if code := callStatus(t, bob, "sip:alice@pku.can"); code != 503 {
		t.Fatalf("every proxy of can down: %d, want 503", code)
	}
}
