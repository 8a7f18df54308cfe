package demo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipua"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Config configures a demo run. The zero value runs the default demo.
type Config struct {
	Domains   int  // number of domains (default 2: pastry, can); at most len(DomainNames)
	Nodes     int  // nodes per domain (default 3; at least 2)
	KillProxy bool // kill the callee domain's proxy before the call, to show failover
	// Logger receives the nodes' logs (default: discarded).
	Logger *slog.Logger
	// Timeout bounds each step that waits on the network (default 30 s).
	Timeout time.Duration
}

// DomainNames are the demo's domains, in order; the first two are the
// draft's examples.
var DomainNames = []string{"pastry", "can", "chord", "bt", "tapestry", "kademlia"}

// users are the demo's users, one per domain: the draft's Bob and Alice first.
var users = []string{"sip:bob@bupt.pastry", "sip:alice@pku.can", "sip:carol@pku.chord", "sip:dave@bupt.bt", "sip:erin@x.tapestry", "sip:frank@y.kademlia"}

// Errors of the demo.
var ErrBadConfig = errors.New("demo: bad config")

func (c Config) withDefaults() (Config, error) {
	if c.Domains == 0 {
		c.Domains = 2
	}
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Domains < 2 || c.Domains > len(DomainNames) {
		return c, fmt.Errorf("%w: domains: %d, want 2 to %d", ErrBadConfig, c.Domains, len(DomainNames))
	}
	if c.Nodes < 2 || c.Nodes > 50 {
		return c, fmt.Errorf("%w: nodes: %d, want 2 to 50", ErrBadConfig, c.Nodes)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	return c, nil
}

// demo is one run: its nodes, their names and the trace of SIP messages.
type demo struct {
	cfg   Config
	out   io.Writer
	start time.Time

	nodes  map[string][]*node.Node // by domain
	names  map[peer.ID]string      // node → "pastry-1"
	domain map[peer.ID]string      // node → its domain
	uas    map[string]string       // UA address → "bob"
	at     []*node.Node            // user i's node

	mu      sync.Mutex
	trace   []sipbridge.TraceEvent
	lookups []node.LookupEvent
}

// Run starts the domains on loopback, waits for their proxies, registers a
// user in each, places a call from the first domain's user to the second's,
// exchanges a MESSAGE, hangs up, and prints what happened to out, with a
// ladder diagram of the call like draft Figure 3.
func Run(ctx context.Context, cfg Config, out io.Writer) (err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return err
	}
	d := &demo{cfg: cfg, out: out, start: time.Now(), nodes: map[string][]*node.Node{},
		names: map[peer.ID]string{}, domain: map[peer.ID]string{}, uas: map[string]string{}}
	defer func() { err = errors.Join(err, d.close()) }()
	return d.run(ctx)
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) run(ctx context.Context) error {
	cfg := d.cfg
	domainsUsed := DomainNames[:cfg.Domains]
	d.printf("hiersip demo: %d domains of %d nodes on loopback, in one process\n", cfg.Domains, cfg.Nodes)
	if err := d.startNodes(ctx, domainsUsed); err != nil {
		return err
	}
	for _, dom := range domainsUsed {
		if _, err := d.waitProxy(ctx, dom); err != nil {
			return err
		}
	}
	d.printf("\nelected after %v:\n", time.Since(d.start).Round(time.Millisecond))
	for _, dom := range domainsUsed {
		d.printRoles(dom)
	}

	// One user per domain, on a node that is not its proxy.
	uas := make([]*sipua.UA, cfg.Domains)
	for i, dom := range domainsUsed {
		at := d.member(dom)
		ua, err := sipua.NewUA(users[i], at.Bridge().UDPAddr(), sipua.WithUALogger(cfg.Logger))
		if err != nil {
			return err
		}
		uas[i] = ua
		contact := ua.Contact()
		d.uas[contact.HostPort()] = strings.TrimPrefix(strings.SplitN(users[i], "@", 2)[0], "sip:")
		rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		_, err = ua.Register(rctx, time.Hour)
		cancel()
		if err != nil {
			return fmt.Errorf("demo: register %s: %w", users[i], err)
		}
		d.printf("registered %s at %s\n", users[i], d.names[at.ID()])
		d.at = append(d.at, at)
	}
	defer func() {
		for _, ua := range uas {
			ua.Close()
		}
	}()
	caller, callee := uas[0], uas[1]

	if cfg.KillProxy {
		if err := d.killProxy(ctx, domainsUsed[1]); err != nil {
			return err
		}
	}

	// The call: retried while the overlays converge (a fresh proxy's record
	// takes a moment to spread), at most Timeout.
	target := callee.AOR().String()
	d.printf("\n%s calls %s\n", caller.AOR(), target)
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var call *sipua.Call
	var invited time.Time
	for {
		d.resetTrace()
		invited = time.Now()
		c, err := caller.Call(cctx, target)
		if err == nil {
			call = c
			break
		}
		var cf *sipua.ErrCallFailed
		if !errors.As(err, &cf) || cctx.Err() != nil {
			return fmt.Errorf("demo: call: %w", err)
		}
		d.printf("  attempt answered %d %s; retrying\n", cf.Response.StatusCode, cf.Response.Reason)
		select {
		case <-cctx.Done():
			return fmt.Errorf("demo: call: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	setup := time.Since(invited)
	msgRes, err := caller.Message(cctx, target, "Hello Alice, this is Bob across the overlays.")
	if err != nil {
		return fmt.Errorf("demo: MESSAGE: %w", err)
	}
	select {
	case m := <-callee.Messages():
		d.printf("%s received MESSAGE %q (%d %s)\n", callee.AOR(), m.Body, msgRes.StatusCode, msgRes.Reason)
	case <-cctx.Done():
		return errors.New("demo: MESSAGE not delivered")
	}
	// Half a second of audio each way: the two end nodes anchor it and carry it over
	// libp2p (package media), the proxies never see it.
	var answered *sipua.Call
	select {
	case answered = <-callee.Incoming():
	case <-cctx.Done():
	}
	audioDeadline := time.Now().Add(3 * time.Second)
	for answered != nil && time.Now().Before(audioDeadline) {
		if m, n := call.Media(), answered.Media(); len(m) > 0 && len(n) > 0 && m[0].Received >= 25 && n[0].Received >= 25 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := call.Hangup(cctx); err != nil {
		return fmt.Errorf("demo: BYE: %w", err)
	}
	if m := call.Media(); len(m) > 0 && answered != nil && len(answered.Media()) > 0 {
		d.printf("audio: %s sent %d RTP packets, %s received %d; %s sent %d, %s received %d (through their two nodes only)\n",
			caller.AOR(), m[0].Sent, callee.AOR(), answered.Media()[0].Received, callee.AOR(), answered.Media()[0].Sent, caller.AOR(), m[0].Received)
	}
	d.printLadder(call.CallID, invited)
	if s, ok := d.setupTime(call.CallID); ok {
		setup = s // as the caller's node saw it, without the UA's own scheduling
	}
	d.printf("\ncall setup INVITE → 200 OK: %v; demo completed in %v\n",
		setup.Round(10*time.Microsecond), time.Since(d.start).Round(time.Millisecond))
	return nil
}

// startNodes starts every domain's nodes. The first node of each domain is
// a global seed; every node knows the seeds started before it.
func (d *demo) startNodes(ctx context.Context, doms []string) error {
	var seeds []string
	for _, dom := range doms {
		var first string
		for i := range d.cfg.Nodes {
			cfg := node.Config{
				Domain:      dom,
				ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
				Logger:      d.cfg.Logger,
				SIP:         &node.SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", Options: []sipbridge.Option{sipbridge.WithTrace(d.record)}},
				Bootstrap:   node.BootstrapConfig{DisableMDNS: true, DisableCache: true},
				Global:      node.BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: slices.Clone(seeds)},
				GlobalSeed:  i == 0,
				LookupTrace: d.recordLookup,
			}
			if i > 0 {
				cfg.Bootstrap.Peers = []string{first}
			}
			n, err := node.New(ctx, cfg)
			if err != nil {
				return fmt.Errorf("demo: start %s-%d: %w", dom, i+1, err)
			}
			d.nodes[dom] = append(d.nodes[dom], n)
			d.names[n.ID()] = fmt.Sprintf("%s-%d", dom, i+1)
			d.domain[n.ID()] = dom
			if i == 0 {
				first = fmt.Sprintf("%s/p2p/%s", n.Host().Addrs()[0], n.ID())
				seeds = append(seeds, first)
			}
		}
	}
	return nil
}

// close stops every node at once: the whole network ends with the demo, so
// no node is left to elect a new proxy while the others close (one at a time,
// the last nodes of a domain would re-elect and fail to publish a proxy record
// the closed electors can no longer endorse).
func (d *demo) close() error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, ns := range d.nodes {
		for _, n := range ns {
			wg.Go(func() {
				if err := n.Close(); err != nil && !errors.Is(err, node.ErrClosed) {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (d *demo) live(dom string) []*node.Node {
	var out []*node.Node
	for _, n := range d.nodes[dom] {
		if n.Election() != nil && !n.IsClosed() {
			out = append(out, n)
		}
	}
	return out
}

// waitProxy waits until exactly one live node of dom serves as its proxy
// and every live node follows it.
func (d *demo) waitProxy(ctx context.Context, dom string) (*node.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	for {
		var proxy *node.Node
		agreed := true
		for _, n := range d.live(dom) {
			st := n.Election().State()
			if st.Role == election.RoleProxy && st.Serving {
				proxy = n
			}
		}
		if proxy != nil {
			for _, n := range d.live(dom) {
				if n.Election().State().Leader != proxy.ID() {
					agreed = false
				}
			}
			if agreed {
				return proxy, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("demo: %s elected no proxy: %w", dom, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// member returns a live node of dom that is not its proxy.
func (d *demo) member(dom string) *node.Node {
	live := d.live(dom)
	for i := len(live) - 1; i >= 0; i-- {
		if !live[i].IsProxy() {
			return live[i]
		}
	}
	return live[0]
}

func (d *demo) printRoles(dom string) {
	var parts []string
	for _, n := range d.live(dom) {
		st := n.Election().State()
		id := n.ID().String()
		parts = append(parts, fmt.Sprintf("%s …%s (%s)", d.names[n.ID()], id[len(id)-6:], st.Role))
	}
	d.printf("  %-7s %s\n", dom+":", strings.Join(parts, ", "))
}

// killProxy closes the host of dom's proxy without a handoff and waits for
// the election to replace it.
func (d *demo) killProxy(ctx context.Context, dom string) error {
	p, err := d.waitProxy(ctx, dom)
	if err != nil {
		return err
	}
	d.printf("\nkilling %s, the proxy of %s (no handoff)\n", d.names[p.ID()], dom)
	killed := time.Now()
	p.Host().Close()
	p.Close()
	np, err := d.waitProxy(ctx, dom)
	if err != nil {
		return err
	}
	d.printf("%s took over as proxy of %s after %v\n", d.names[np.ID()], dom, time.Since(killed).Round(time.Millisecond))
	d.printRoles(dom)
	return nil
}

func (d *demo) record(ev sipbridge.TraceEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.trace) < 10000 {
		d.trace = append(d.trace, ev)
	}
}

func (d *demo) recordLookup(ev node.LookupEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.lookups) < 10000 {
		d.lookups = append(d.lookups, ev)
	}
}

func (d *demo) resetTrace() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.trace, d.lookups = nil, nil
}

// name returns a printable name for a node or a UA address.
func (d *demo) name(id peer.ID, addr string) string {
	if id != "" {
		n := d.names[id]
		if n == "" {
			n = "…" + id.String()[len(id.String())-6:]
		}
		for _, nodes := range d.nodes {
			for _, nd := range nodes {
				if nd.ID() == id && !nd.IsClosed() && nd.IsProxy() {
					return n + " (proxy)"
				}
			}
		}
		return n
	}
	if u, ok := d.uas[addr]; ok {
		return u + "'s UA"
	}
	return addr
}

// printLadder prints the messages of one call that the nodes sent, and
// those the UAs sent to their nodes, in time order.
// setupTime is the time from the caller's INVITE reaching its node to that node
// sending the 200 OK back to the caller, from the trace.
func (d *demo) setupTime(callID string) (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var in *sipbridge.TraceEvent
	for i, e := range d.trace {
		switch {
		case e.CallID != callID:
		case in == nil && !e.Sent && e.Peer == "" && strings.HasPrefix(e.First, "INVITE "):
			in = &d.trace[i]
		case in != nil && e.Sent && e.Addr == in.Addr && e.Node == in.Node && strings.HasPrefix(e.First, "200 "):
			return e.At.Sub(in.At), true
		}
	}
	return 0, false
}

// ladderRow is one line of the ladder: a SIP message or half of a lookup.
type ladderRow struct {
	at                  time.Time
	from, to, msg, step string
}

// role is a node's part in draft Figure 3: the caller's node (the figure's
// "Bob's UA": hiersip's UAs use their node as outbound proxy), the caller's
// proxy P1, the callee's proxy P2, the callee's node.
func (d *demo) role(id peer.ID) string {
	switch {
	case id == "":
		return ""
	case len(d.at) > 1 && id == d.at[0].ID():
		return "caller"
	case len(d.at) > 1 && id == d.at[1].ID():
		return "callee"
	case d.isProxy(id) && d.domain[id] == DomainNames[0]:
		return "P1"
	case d.isProxy(id) && d.domain[id] == DomainNames[1]:
		return "P2"
	}
	return ""
}

func (d *demo) isProxy(id peer.ID) bool {
	for _, nodes := range d.nodes {
		for _, nd := range nodes {
			if nd.ID() == id && !nd.IsClosed() && nd.IsProxy() {
				return true
			}
		}
	}
	return false
}

// figureSteps numbers the messages between nodes as draft Figure 3 does.
var figureSteps = map[string]string{
	"INVITE caller>P1": "F3", "100 P1>caller": "F4",
	"INVITE P1>P2": "F7", "100 P2>P1": "F8",
	"INVITE P2>callee": "F11",
	"180 callee>P2":    "F12", "180 P2>P1": "F13", "180 P1>caller": "F14",
	"200 callee>P2": "F15", "200 P2>P1": "F16", "200 P1>caller": "F17",
	"ACK caller>callee": "F18",
}

// lookupSteps numbers the lookups: the caller's node finds its proxy (F1/F2),
// P1 finds the callee domain's proxy (F5/F6), P2 finds the callee (F9/F10).
func lookupSteps(ev node.LookupEvent) (string, string) {
	switch {
	case ev.Record == "binding" || ev.Record == "devices":
		return "F9", "F10"
	case ev.Overlay == "global":
		return "F5", "F6"
	}
	return "F1", "F2"
}

// lookupRows are the two lines of a lookup: the query and its answer.
func (d *demo) lookupRows(ev node.LookupEvent) []ladderRow {
	asker := d.name(ev.Node, "")
	var where string
	switch ev.Source {
	case node.SourceElection:
		where = "election state"
	case node.SourceCache:
		where = "proxy cache"
	default:
		if ev.Overlay == "global" {
			where = "global overlay"
		} else {
			where = d.domain[ev.Node] + " overlay"
		}
	}
	var answer string
	if ev.Err != nil {
		answer = "not found"
	} else {
		var names []string
		for _, id := range ev.Found {
			names = append(names, d.name(id, ""))
		}
		answer = strings.Join(names, ", ")
	}
	q, a := lookupSteps(ev)
	took := fmt.Sprintf("(%.3fms", float64(ev.Took.Microseconds())/1000)
	switch ev.Source {
	case node.SourceElection:
		took += ", known from the election: no lookup"
	case node.SourceCache:
		took += ", cached from an earlier lookup"
	}
	return []ladderRow{
		{at: ev.At, from: asker, to: where, msg: "GET " + ev.Key, step: q},
		{at: ev.At.Add(ev.Took), from: where, to: asker, msg: answer + " " + took + ")", step: a},
	}
}

// printLadder prints the call as the nodes saw it: the SIP messages the
// nodes sent and those the UAs sent to their nodes, and the lookups the
// nodes made while the call was set up, in time order, numbered as in draft
// Figure 3.
func (d *demo) printLadder(callID string, t0 time.Time) {
	d.mu.Lock()
	evs := slices.Clone(d.trace)
	lookups := slices.Clone(d.lookups)
	d.mu.Unlock()
	evs = slices.DeleteFunc(evs, func(e sipbridge.TraceEvent) bool { return e.CallID != callID })
	var rows []ladderRow
	var answered time.Time // the 200 OK reaching the caller's UA ends the setup
	for _, e := range evs {
		var from, to, fromRole, toRole string
		switch {
		case e.Sent:
			from, to = d.name(e.Node, ""), d.name(e.Peer, e.Addr)
			fromRole, toRole = d.role(e.Node), d.role(e.Peer)
			if e.Peer == "" && strings.HasPrefix(e.First, "200 ") && strings.Contains(e.First, "OK") &&
				len(d.at) > 0 && e.Node == d.at[0].ID() && (answered.IsZero() || e.At.Before(answered)) {
				answered = e.At
			}
		case e.Peer == "":
			// Received from a UA: the UA sent it.
			from, to = d.name("", e.Addr), d.name(e.Node, "")
		default:
			continue // received from a node: already shown as that node's send
		}
		method, _, _ := strings.Cut(e.First, " ")
		step := ""
		if fromRole != "" && toRole != "" {
			step = figureSteps[method+" "+fromRole+">"+toRole]
		}
		rows = append(rows, ladderRow{at: e.At, from: from, to: to, msg: e.First, step: step})
	}
	for _, ev := range lookups {
		if ev.At.Before(t0) || (!answered.IsZero() && ev.At.After(answered)) {
			continue // not this call's setup (the MESSAGE that follows, say)
		}
		rows = append(rows, d.lookupRows(ev)...)
	}
	slices.SortStableFunc(rows, func(a, b ladderRow) int { return cmp.Compare(a.at.UnixNano(), b.at.UnixNano()) })
	d.printf("\nladder of Call-ID %s (as the nodes saw it; F1–F18 as in draft Figure 3,\n", callID)
	d.printf("where the figure's \"Bob's UA\" is bob's node, his softphone's outbound proxy):\n")
	d.printf("  %10s  %-4s  %-22s    %-22s  %s\n", "time", "fig.", "from", "to", "message")
	for _, r := range rows {
		d.printf("  %8.3fms  %-4s  %-22s -> %-22s  %s\n", float64(r.at.Sub(t0).Microseconds())/1000, r.step, r.from, r.to, r.msg)
	}
}
