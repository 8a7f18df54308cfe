package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipbridge"
)

// HelperEnv is the environment variable that turns a binary calling
// MaybeRunHelper into the node helper process.
const HelperEnv = "HIERSIP_BENCH_HELPER"

// MaybeRunHelper runs the node helper and exits when the process was started
// as one (HelperEnv set); otherwise it returns at once. Every main package
// (and TestMain) that calls Run must call it first: Run starts the hiersip
// nodes in a child process, a re-execution of os.Executable, so that their
// CPU time and memory can be read from /proc apart from the load generator.
func MaybeRunHelper() {
	if os.Getenv(HelperEnv) == "" {
		return
	}
	if err := helperMain(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hiersip-bench helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperInfo is what the helper prints once its domains have proxies.
type helperInfo struct {
	PID     int                     `json:"pid"`
	Domains map[string]helperDomain `json:"domains"`
	Startup time.Duration           `json:"startup_ns"`
}

type helperDomain struct {
	Nodes   []string `json:"nodes"`   // SIP UDP address of each node
	Proxy   int      `json:"proxy"`   // index of the serving proxy
	Members []int    `json:"members"` // nodes that never become proxy (election opt-out)
	P2P     []string `json:"p2p"`     // libp2p multiaddr of each node
}

type helper struct {
	log   *slog.Logger
	nodes map[string][]*node.Node
	names []string
	mu    sync.Mutex
	prof  *os.File
	media node.MediaConfig
}

// helperMain starts -domains domains of -nodes nodes on loopback (the last
// -members of each opted out of the election), waits for their proxies,
// prints a helperInfo line and then serves commands, one per line on in,
// answering "ok …" or "err …" on out.
func helperMain(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("helper", flag.ContinueOnError)
	ndom := fs.Int("domains", 2, "domains")
	nnodes := fs.Int("nodes", 3, "nodes per domain")
	members := fs.Int("members", 2, "nodes per domain that opt out of the election")
	udpBuf := fs.Int("udpbuf", 8<<20, "UDP socket buffer of each bridge")
	join := fs.String("join", "", "bootstrap multiaddr of an existing domain; no proxy is awaited")
	var mc node.MediaConfig
	fs.IntVar(&mc.MaxSessions, "media-sessions", 0, "media sessions per node and per peer (0: the default)")
	fs.IntVar(&mc.PortMin, "media-port-min", 0, "media port range (0: the default)")
	fs.IntVar(&mc.PortMax, "media-port-max", 0, "media port range (0: the default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mc.MaxSessionsPerPeer = mc.MaxSessions
	if *ndom < 1 || *ndom > len(domainNames) || *nnodes < 1 || *members > *nnodes || (*members == *nnodes && *join == "") {
		return fmt.Errorf("bad helper flags %v", args)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	h := &helper{log: log, nodes: map[string][]*node.Node{}, names: domainNames[:*ndom], media: mc}
	defer h.close()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := h.start(ctx, *nnodes, *members, *udpBuf, *join); err != nil {
		return err
	}
	info := helperInfo{PID: os.Getpid(), Domains: map[string]helperDomain{}}
	for _, d := range h.names {
		p := -1
		if *join == "" {
			var err error
			if p, err = h.waitProxy(ctx, d); err != nil {
				return err
			}
		} else {
			select {
			case <-h.nodes[d][0].Joined():
			case <-ctx.Done():
				return fmt.Errorf("joining %s: %w", *join, ctx.Err())
			}
		}
		hd := helperDomain{Proxy: p}
		for i, n := range h.nodes[d] {
			hd.Nodes = append(hd.Nodes, n.Bridge().UDPAddr())
			hd.P2P = append(hd.P2P, fmt.Sprintf("%s/p2p/%s", n.Host().Addrs()[0], n.ID()))
			if i >= *nnodes-*members {
				hd.Members = append(hd.Members, i)
			}
		}
		info.Domains[d] = hd
	}
	info.Startup = time.Since(start)
	b, _ := json.Marshal(info)
	fmt.Fprintf(out, "%s\n", b)
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		reply, err := h.command(strings.Fields(sc.Text()))
		if err != nil {
			fmt.Fprintf(out, "err %v\n", err)
		} else {
			fmt.Fprintf(out, "ok %s\n", reply)
		}
	}
	return nil
}

// domainNames are the benchmark's domains, in order.
var domainNames = []string{"pastry", "can", "chord"}

func (h *helper) start(ctx context.Context, n, members, udpBuf int, join string) error {
	var seeds []string
	for _, dom := range h.names {
		var first string
		for i := range n {
			cfg := node.Config{
				Domain:       dom,
				KnownDomains: slices.DeleteFunc(slices.Clone(h.names), func(s string) bool { return s == dom }),
				ListenAddrs:  []string{"/ip4/127.0.0.1/tcp/0"},
				Logger:       h.log,
				SIP: &node.SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", Limits: benchLimits(),
					Options: []sipbridge.Option{sipbridge.WithUDPBuffer(udpBuf)}},
				Bootstrap:  node.BootstrapConfig{DisableMDNS: true, DisableCache: true},
				Global:     node.BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: slices.Clone(seeds)},
				GlobalSeed: i == 0 && join == "",
				Election:   node.ElectionConfig{OptOut: i >= n-members},
				Media:      h.media,
				LookupRate: -1, // a load generator looks names up from one node: no per-peer bound
			}
			if i > 0 {
				cfg.Bootstrap.Peers = []string{first}
			}
			if join != "" {
				cfg.Bootstrap.Peers = []string{join}
			}
			nd, err := node.New(ctx, cfg)
			if err != nil {
				return fmt.Errorf("start %s-%d: %w", dom, i, err)
			}
			h.nodes[dom] = append(h.nodes[dom], nd)
			if i == 0 {
				first = fmt.Sprintf("%s/p2p/%s", nd.Host().Addrs()[0], nd.ID())
				seeds = append(seeds, first)
			}
		}
	}
	return nil
}

func (h *helper) close() {
	for _, ns := range h.nodes {
		for _, n := range ns {
			_ = n.Close()
		}
	}
}

// waitProxy waits until one live node of dom serves as its proxy and every
// live node follows it; it returns the proxy's index.
func (h *helper) waitProxy(ctx context.Context, dom string) (int, error) {
	for {
		idx := -1
		var id string
		for i, n := range h.nodes[dom] {
			if n.IsClosed() || n.Election() == nil {
				continue
			}
			if st := n.Election().State(); st.Role == election.RoleProxy && st.Serving {
				idx, id = i, n.ID().String()
			}
		}
		if idx >= 0 {
			agreed := true
			for _, n := range h.nodes[dom] {
				if !n.IsClosed() && n.Election() != nil && n.Election().State().Leader.String() != id {
					agreed = false
				}
			}
			if agreed {
				return idx, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("%s elected no proxy: %w", dom, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (h *helper) nodeAt(dom, idx string) (*node.Node, error) {
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || i >= len(h.nodes[dom]) {
		return nil, fmt.Errorf("no node %s/%s", dom, idx)
	}
	return h.nodes[dom][i], nil
}

// command runs one helper command:
//
//	kill <domain>                 close the domain's proxy (no handoff); reply: its index
//	proxy <domain>                wait for a serving proxy; reply: its index
//	resolve <domain> <idx> <aor>  poll the node's Lookup until aor resolves
//	media <domain> <idx>          reply: the node's media sessions, packets to peers and to phones, drops by reason
//	stats                         reply: goroutines and heap in use
//	profstart <file> / profstop   CPU profile of this process
func (h *helper) command(f []string) (string, error) {
	if len(f) == 0 {
		return "", errors.New("empty command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch {
	case f[0] == "kill" && len(f) == 2:
		p, err := h.waitProxy(ctx, f[1])
		if err != nil {
			return "", err
		}
		n := h.nodes[f[1]][p]
		_ = n.Host().Close()
		_ = n.Close()
		return strconv.Itoa(p), nil
	case f[0] == "proxy" && len(f) == 2:
		p, err := h.waitProxy(ctx, f[1])
		return strconv.Itoa(p), err
	case f[0] == "resolve" && len(f) == 4:
		n, err := h.nodeAt(f[1], f[2])
		if err != nil {
			return "", err
		}
		aor, err := n.ParseAOR(f[3])
		if err != nil {
			return "", err
		}
		for tries := 1; ; tries++ {
			if _, err := n.Lookup(ctx, aor); err == nil {
				return strconv.Itoa(tries), nil
			} else if ctx.Err() != nil {
				return "", err
			}
			time.Sleep(time.Millisecond)
		}
	case f[0] == "media" && len(f) == 3:
		n, err := h.nodeAt(f[1], f[2])
		if err != nil || n.Media() == nil {
			return "", fmt.Errorf("no media relay at %s/%s", f[1], f[2])
		}
		st := n.Media().Stats()
		var drops []string
		for _, r := range media.DropReasons {
			if v := st.Dropped[r]; v > 0 {
				drops = append(drops, fmt.Sprintf("%s=%d", r, v))
			}
		}
		return fmt.Sprintf("%d %d %d %s", st.Sessions, st.ToPeer, st.ToPhone, strings.Join(drops, ",")), nil
	case f[0] == "stats":
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return fmt.Sprintf("%d %d", runtime.NumGoroutine(), ms.HeapInuse), nil
	case f[0] == "profstart" && len(f) == 2:
		h.mu.Lock()
		defer h.mu.Unlock()
		fh, err := os.Create(f[1])
		if err != nil {
			return "", err
		}
		if err := pprof.StartCPUProfile(fh); err != nil {
			fh.Close()
			return "", err
		}
		h.prof = fh
		return "", nil
	case f[0] == "profstop":
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.prof == nil {
			return "", errors.New("no profile running")
		}
		pprof.StopCPUProfile()
		err := h.prof.Close()
		h.prof = nil
		return "", err
	}
	return "", fmt.Errorf("unknown command %q", f)
}

// nodes is the benchmark's handle on a helper process.
type nodes struct {
	cmd  *exec.Cmd
	info helperInfo
	in   io.WriteCloser
	out  *bufio.Reader
	mu   sync.Mutex
}

// startNodes starts a helper process with the given flags and waits for its
// domains' proxies.
func startNodes(ctx context.Context, args ...string) (*nodes, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), HelperEnv+"=1")
	cmd.Stderr = os.Stderr
	dieWithParent(cmd)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &nodes{cmd: cmd, in: in, out: bufio.NewReader(outp)}
	line, err := n.readLine(ctx, 90*time.Second)
	if err == nil {
		err = json.Unmarshal([]byte(line), &n.info)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("bench: node helper: %w", err), n.Close())
	}
	return n, nil
}

func (n *nodes) readLine(ctx context.Context, timeout time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := n.out.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-t.C:
		_ = n.cmd.Process.Kill()
		return "", errors.New("helper timed out")
	case <-ctx.Done():
		_ = n.cmd.Process.Kill()
		return "", ctx.Err()
	}
}

// do sends one command and returns the reply after "ok ".
func (n *nodes) do(ctx context.Context, cmd ...string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := fmt.Fprintln(n.in, strings.Join(cmd, " ")); err != nil {
		return "", err
	}
	line, err := n.readLine(ctx, 60*time.Second)
	if err != nil {
		return "", err
	}
	if r, ok := strings.CutPrefix(line, "ok"); ok {
		return strings.TrimSpace(r), nil
	}
	return "", fmt.Errorf("bench: helper %s: %s", cmd[0], line)
}

func (n *nodes) pid() int { return n.cmd.Process.Pid }

// addr returns the SIP UDP address of node idx of dom.
func (n *nodes) addr(dom string, idx int) string { return n.info.Domains[dom].Nodes[idx] }

// Close ends the helper: stdin closed, then a kill if it lingers.
func (n *nodes) Close() error {
	_ = n.in.Close()
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
	return nil
}

// benchLimits are the SIP limits of the benchmark's nodes: a load generator sends
// everything from one address, far above what one user agent's source may
// (sipbridge.DefaultLimits), so rate limits are off and the transaction bounds
// high, as Kamailio runs with none.
func benchLimits() *sipbridge.Limits {
	l := sipbridge.DefaultLimits()
	l.SourceRate, l.PeerRate = 0, 0
	l.MaxSourceTx, l.MaxUATx = 1<<20, 1<<20
	return &l
}
