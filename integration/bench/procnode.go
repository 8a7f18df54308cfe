package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/node/daemon"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Every hiersip node of the benchmark is a `hiersip node --config FILE` process, started
// as a user runs one: a YAML configuration file and a data directory of its own in the
// run's node directory, its admin endpoint on a free loopback port (the bench reads
// /status and /metrics there, and /debug/pprof/ for --profile). Its CPU time and memory
// are read from /proc/<pid>.

var errNodeStart = errors.New("bench: node did not start")

// buildHiersip builds ./cmd/hiersip of the module in the working directory into dir
// (go build; the build cache makes later runs fast) and returns the binary's path.
func buildHiersip(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "hiersip")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/hiersip/hiersip/cmd/hiersip")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("bench: go build github.com/hiersip/hiersip/cmd/hiersip (run the bench inside the hiersip module, or give --hiersip): %w: %s", err, tailStr(buf.String(), 1500))
	}
	return out, nil
}

// nodeSpec is the configuration of one node process.
type nodeSpec struct {
	Domain     string
	Known      []string // known_domains
	Bootstrap  []string // bootstrap.peers
	Global     []string // global.peers
	GlobalSeed bool
	OptOut     bool // election.opt_out
	// MediaPorts is media.ports ("10000-11999"); MediaSessions media.max_sessions and
	// MediaPerPeer max_sessions_per_peer (0: the defaults).
	MediaPorts    string
	MediaSessions int
	MediaPerPeer  int
}

// yamlList renders a YAML flow sequence of quoted strings.
func yamlList(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// config renders the node's configuration file. Everything not set here is the daemon's
// default (hiersip.example.yaml); what differs from a default installation, and why:
//
//   - loopback only, free ports (port 0), libp2p over TCP (the node-to-node hop is
//     TCP+TLS+yamux, as between two hosts without QUIC), no mDNS and no peer cache: the
//     run's domains are exactly the processes it starts;
//   - sip.limits: no per-source or per-peer request rate and no bound on the
//     transactions of one source, because sipp sends every call from one address (as
//     Kamailio runs with none); the per-peer transaction bound stays the default;
//   - the media relay is on, as by default, with a port range of its own per node; in the
//     call paths the media sessions one peer's calls may open are raised from 200 to
//     the node's bound (1,000, the default media.max_sessions), because every call of
//     the bench comes through one peer node: with 200, a path answers 503 once 200
//     calls are being set up at once (at 1,000 calls/s when a call's media session
//     lives 200 ms, as it does on a node that queues);
//   - admin on a free loopback port with /debug/pprof/, log level warn, a 3 s shutdown.
func (s nodeSpec) config(dataDir string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# hiersip node configuration written by hiersip-bench")
	p("domain: %q", s.Domain)
	p("known_domains: %s", yamlList(s.Known))
	p("data_dir: %q", dataDir)
	p("listen_addrs: [\"/ip4/127.0.0.1/tcp/0\"]")
	p("bootstrap:\n  mdns: false\n  cache: false\n  peers: %s", yamlList(s.Bootstrap))
	p("global:\n  mdns: false\n  cache: false\n  peers: %s", yamlList(s.Global))
	p("global_seed: %t", s.GlobalSeed)
	p("sip:\n  udp: 127.0.0.1:0\n  tcp: 127.0.0.1:0")
	p("  limits:\n    source_rate: 0\n    peer_rate: 0\n    max_source_transactions: 1048576\n    max_transactions: 1048576")
	p("election:\n  opt_out: %t", s.OptOut)
	p("media:")
	if s.MediaPorts != "" {
		p("  ports: %s", s.MediaPorts)
	}
	if s.MediaSessions > 0 {
		p("  max_sessions: %d", s.MediaSessions)
	}
	if s.MediaPerPeer > 0 {
		p("  max_sessions_per_peer: %d", s.MediaPerPeer)
	}
	p("admin:\n  listen: 127.0.0.1:0\n  pprof: true")
	p("log:\n  level: warn")
	p("shutdown_timeout: 3s")
	return b.String()
}

// procNode is one running `hiersip node` process.
type procNode struct {
	name    string // "pastry-1"
	spec    nodeSpec
	dir     string // its directory: config.yaml, node.log, data/
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error
	admin   string // admin endpoint URL
	peerID  string
	p2p     string // first libp2p multiaddr, with /p2p/<id>
	sip     string // SIP UDP address
	http    *http.Client
}

// startNode writes spec's configuration into dir/name and starts the node, then waits
// until its admin endpoint answers with a SIP address.
func startNode(ctx context.Context, bin, dir, name string, spec nodeSpec) (*procNode, error) {
	nd := filepath.Join(dir, name)
	data := filepath.Join(nd, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	cfg := filepath.Join(nd, "config.yaml")
	if err := os.WriteFile(cfg, []byte(spec.config(data)), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(nd, "node.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "node", "--config", cfg)
	cmd.Dir = nd
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &procNode{name: name, spec: spec, dir: nd, cmd: cmd, done: make(chan struct{}), http: &http.Client{Timeout: 30 * time.Second}}
	go func() { n.waitErr = cmd.Wait(); close(n.done) }()
	if err := n.awaitAdmin(ctx, filepath.Join(data, daemon.AdminURLFile)); err != nil {
		n.kill()
		return nil, fmt.Errorf("%w: %s: %w\n%s", errNodeStart, name, err, n.logTail())
	}
	return n, nil
}

// cleanEnv is the environment of a node process: the benchmark's, without HIERSIP_
// variables (they would override the configuration file).
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, daemon.EnvPrefix) })
}

func (n *procNode) awaitAdmin(ctx context.Context, urlFile string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(urlFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			n.admin = strings.TrimSpace(string(b))
			st, err := n.status(ctx)
			if err == nil && st.SIP != nil && st.SIP.UDP != "" && len(st.Addrs) > 0 {
				n.peerID, n.sip = st.PeerID, st.SIP.UDP
				n.p2p = st.Addrs[0] + "/p2p/" + st.PeerID
				return nil
			}
		}
		select {
		case <-n.done:
			return fmt.Errorf("exited: %v", n.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("no admin endpoint after 60 s")
		}
	}
}

func (n *procNode) pid() int { return n.cmd.Process.Pid }

func (n *procNode) alive() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func (n *procNode) logTail() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "node.log"))
	return tailStr(string(b), 2000)
}

func (n *procNode) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.admin+path, nil)
	if err != nil {
		return nil, err
	}
	res, err := n.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("bench: %s%s: %s", n.admin, path, res.Status)
	}
	return b, err
}

// status reads the node's /status.
func (n *procNode) status(ctx context.Context) (node.Status, error) {
	var st node.Status
	b, err := n.get(ctx, "/status")
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	return st, err
}

// metrics reads the node's /metrics: each family's samples summed over their labels,
// by family name (a histogram or summary is its _count).
func (n *procNode) metrics(ctx context.Context) (map[string]float64, error) {
	mf, err := n.families(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, f := range mf {
		var v float64
		for _, m := range f.GetMetric() {
			v += metricValue(m)
		}
		out[name] = v
	}
	return out, nil
}

func (n *procNode) families(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	b, err := n.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(b))
}

// diag summarises what a node says about refused and failed calls since it started:
// transactions in flight, media sessions, SIP messages its limits refused by reason,
// and INVITEs routed by final status other than 200.
func (n *procNode) diag(ctx context.Context) string {
	mf, err := n.families(ctx)
	if err != nil {
		return n.name + ": " + err.Error()
	}
	parts := []string{}
	for _, name := range []string{"hiersip_sip_transactions_in_flight", "hiersip_media_sessions", "hiersip_sip_rejected_total", "hiersip_sip_calls_routed_total"} {
		f := mf[name]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			skip := false
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == "200" {
					skip = true
				}
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if v := metricValue(m); !skip && (v != 0 || len(labels) == 0) {
				short := strings.TrimPrefix(strings.TrimPrefix(name, "hiersip_sip_"), "hiersip_")
				if len(labels) > 0 {
					short += "{" + strings.Join(labels, ",") + "}"
				}
				parts = append(parts, fmt.Sprintf("%s=%.0f", short, v))
			}
		}
	}
	return n.name + ": " + strings.Join(parts, " ")
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Summary != nil:
		return float64(m.Summary.GetSampleCount())
	}
	return 0
}

// profile fetches /debug/pprof/<kind>?seconds=<d> into file: a CPU profile over the
// next d ("profile"), or the allocations made during it ("allocs", a delta profile).
func (n *procNode) profile(ctx context.Context, kind string, d time.Duration, file string) error {
	c := &http.Client{Timeout: d + 30*time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", n.admin, kind, int(d.Seconds())), nil)
	if err != nil {
		return err
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("bench: %s pprof %s: %s: %s", n.name, kind, res.Status, tailStr(string(b), 300))
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, res.Body)
	return errors.Join(err, f.Close())
}

// kill ends the process at once (SIGKILL: no handoff, no goodbye) and waits for it.
func (n *procNode) kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// stop asks the node to leave (SIGTERM) and kills it if it is not gone within 8 s.
func (n *procNode) stop() {
	if !n.alive() {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(8 * time.Second):
		n.kill()
	}
}

// cluster is a set of domains, each of node processes.
type cluster struct {
	dir   string
	names []string
	nodes map[string][]*procNode
	// members are, per domain, the indices of the nodes that opted out of the election.
	members map[string][]int
}

// domainNames are the benchmark's domains, in order.
var domainNames = []string{"pastry", "can", "chord"}

// clusterOpts shape a cluster.
type clusterOpts struct {
	domains, perDomain, members int
	// mediaPorts, when set, gives node i of the cluster its media port range.
	mediaPorts    func(i int) string
	mediaSessions int
	mediaPerPeer  int
}

// startCluster starts opts.domains domains of opts.perDomain node processes each in a
// new directory under the run's node directory; the last opts.members nodes of each
// opt out of the election. Node 0 of each domain is a global seed; the others
// bootstrap from it, and the global overlay from the seeds of the other domains. It
// returns when every domain has one serving proxy that all its nodes follow (and, with
// several domains, every node is ready for calls to other domains).
func (r *runner) startCluster(ctx context.Context, label string, opts clusterOpts) (c *cluster, err error) {
	if opts.domains < 1 || opts.domains > len(domainNames) || opts.perDomain < 1 || opts.members >= opts.perDomain {
		return nil, fmt.Errorf("bench: bad cluster %+v", opts)
	}
	dir, err := os.MkdirTemp(r.nodeDir, label+"-")
	if err != nil {
		return nil, err
	}
	c = &cluster{dir: dir, names: domainNames[:opts.domains], nodes: map[string][]*procNode{}, members: map[string][]int{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	start := time.Now()
	k := 0
	spec := func(dom string, i int) nodeSpec {
		s := nodeSpec{Domain: dom, OptOut: i >= opts.perDomain-opts.members, GlobalSeed: i == 0, MediaSessions: opts.mediaSessions, MediaPerPeer: opts.mediaPerPeer}
		for _, d := range c.names {
			if d != dom {
				s.Known = append(s.Known, d)
			}
		}
		if opts.mediaPorts != nil {
			s.MediaPorts = opts.mediaPorts(k)
		} else {
			s.MediaPorts = r.mediaBlock()
		}
		k++
		return s
	}
	// The seeds first, one after the other (each later one knows the earlier ones as
	// global peers), then every other node at once.
	var seeds []string
	for _, dom := range c.names {
		s := spec(dom, 0)
		s.Global = slices.Clone(seeds)
		n, err := startNode(ctx, r.hiersip, dir, fmt.Sprintf("%s-0", dom), s)
		if err != nil {
			return c, err
		}
		c.nodes[dom] = []*procNode{n}
		seeds = append(seeds, n.p2p)
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	rest := map[string][]*procNode{}
	for _, dom := range c.names {
		rest[dom] = make([]*procNode, opts.perDomain-1)
		for i := 1; i < opts.perDomain; i++ {
			s := spec(dom, i)
			s.Bootstrap = []string{c.nodes[dom][0].p2p}
			s.Global = slices.DeleteFunc(slices.Clone(seeds), func(a string) bool { return a == c.nodes[dom][0].p2p })
			wg.Go(func() {
				n, err := startNode(ctx, r.hiersip, dir, fmt.Sprintf("%s-%d", dom, i), s)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				rest[dom][i-1] = n
			})
		}
	}
	wg.Wait()
	for _, dom := range c.names {
		for _, n := range rest[dom] {
			if n != nil {
				c.nodes[dom] = append(c.nodes[dom], n)
			}
		}
		for i := opts.perDomain - opts.members; i < opts.perDomain; i++ {
			c.members[dom] = append(c.members[dom], i)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for _, dom := range c.names {
		if _, err := c.waitProxy(wctx, dom); err != nil {
			return c, err
		}
	}
	if opts.domains > 1 {
		if err := c.waitReadyGlobal(wctx); err != nil {
			return c, err
		}
	}
	r.log.Info("bench: cluster up", "label", label, "nodes", opts.domains*opts.perDomain, "took", time.Since(start).Round(time.Millisecond), "dir", dir)
	return c, nil
}

// waitProxy waits until one live node of dom serves as its proxy and every live node
// of dom follows it; it returns the proxy's index.
func (c *cluster) waitProxy(ctx context.Context, dom string) (int, error) {
	for {
		idx, leader, agreed := -1, "", true
		for i, n := range c.nodes[dom] {
			if !n.alive() {
				continue
			}
			st, err := n.status(ctx)
			if err != nil {
				agreed = false
				continue
			}
			if st.IsProxy && st.Role == "proxy" {
				idx = i
			}
			if leader == "" {
				leader = st.Leader
			} else if st.Leader != leader {
				agreed = false
			}
		}
		if idx >= 0 && agreed && leader == c.nodes[dom][idx].peerID {
			return idx, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("bench: domain %s elected no proxy: %w", dom, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitReadyGlobal waits until every live node is ready for calls to other domains.
func (c *cluster) waitReadyGlobal(ctx context.Context) error {
	for _, dom := range c.names {
		for _, n := range c.nodes[dom] {
			for n.alive() {
				st, err := n.status(ctx)
				if err == nil && st.ReadyGlobal {
					break
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("bench: %s not ready for other domains: %w", n.name, ctx.Err())
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

// member returns the i-th node of dom that opted out of the election.
func (c *cluster) member(dom string, i int) *procNode { return c.nodes[dom][c.members[dom][i]] }

// proxy returns the serving proxy of dom.
func (c *cluster) proxy(ctx context.Context, dom string) (*procNode, error) {
	i, err := c.waitProxy(ctx, dom)
	if err != nil {
		return nil, err
	}
	return c.nodes[dom][i], nil
}

// all returns every node of the cluster.
func (c *cluster) all() []*procNode {
	var out []*procNode
	for _, dom := range c.names {
		out = append(out, c.nodes[dom]...)
	}
	return out
}

// Close stops every node (at once, each with SIGTERM, then SIGKILL after 8 s).
func (c *cluster) Close() {
	var wg sync.WaitGroup
	for _, n := range c.all() {
		wg.Go(n.stop)
	}
	wg.Wait()
}
