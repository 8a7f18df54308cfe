// Command natnode is a test helper of the NAT test bed: it runs a hiersip
// node (node.New with SIP on loopback) and, with -user, a sipbridge.UA
// registered with it, and prints one machine-readable line per event:
//
//	READY <peer ID> addrs=<comma-separated multiaddrs with /p2p/>
//	RELAYED <multiaddr>                      (a relayed address appeared)
//	JOINED after=<duration>                  (the domain overlay has a peer)
//	PROXY / NOTPROXY                         (the node's proxy role changed)
//	REGISTERED <aor> after=<duration>
//	CONN peer=<id> path=<direct|relayed> addr=<remote> at=<unix ms>
//	DISCONN peer=<id> path=<direct|relayed> at=<unix ms>
//	INCOMING from=<remote> callid=<id>       (the UA answered a call)
//
// and answers commands written as lines to the FIFO named by -control:
//
//	call <target AOR>  → CALL-OK target=… setup_ms=… | CALL-FAIL target=… err=…,
//	                     then BYE-OK | BYE-FAIL err=…
//	paths              → PATH peer=<id> path=<…> (one per connected peer), PATHS-END
//	disconnect <id>    → DISCONNECTED peer=<id>
//	lookup <domain>    → LOOKUP-OK domain=… proxies=… | LOOKUP-FAIL domain=… err=…
//	                     (a proxy's global-overlay lookup of a domain's proxies)
//	dial <multiaddr>   → DIAL-OK peer=… path=… connect_ms=… direct_ms=<ms or -1>
//	                     | DIAL-FAIL err=…; it connects (relayed allowed) and
//	                     waits up to 10 s for hole punching to add a direct
//	                     connection, measured with a plain libp2p stream
//
// It runs until SIGTERM or SIGINT.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// pingProtocol is a trivial echo protocol for "dial": a stream over the
// relayed connection proves that it carries our traffic.
const pingProtocol = "/hiersip/test/echo/1.0.0"

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

type flags struct {
	domain, known, listen, relays, peers, globalPeers, reach, user, control string
	public, seed, noMDNS, noHolePunch, optOut, answer                       bool
}

var (
	mu    sync.Mutex
	start = time.Now()
)

func say(format string, args ...any) {
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func main() {
	var f flags
	flag.StringVar(&f.domain, "domain", "pastry", "the node's domain")
	flag.StringVar(&f.known, "known", "", "comma-separated further known domains")
	flag.StringVar(&f.listen, "listen", "/ip4/0.0.0.0/tcp/0,/ip4/0.0.0.0/udp/0/quic-v1", "comma-separated libp2p listen multiaddrs")
	flag.StringVar(&f.relays, "relays", "", "comma-separated relay multiaddrs (NAT.Relays)")
	flag.StringVar(&f.peers, "peers", "", "comma-separated bootstrap peers of the domain")
	flag.StringVar(&f.globalPeers, "global-peers", "", "comma-separated peers of the global overlay")
	flag.StringVar(&f.reach, "reach", "", "forced reachability: public, private or empty")
	flag.StringVar(&f.user, "user", "", "AOR of a UA to register with the node")
	flag.StringVar(&f.control, "control", "", "FIFO to read commands from")
	flag.BoolVar(&f.public, "public", false, "NAT.Public: relay and AutoNAT service")
	flag.BoolVar(&f.seed, "seed", false, "GlobalSeed")
	flag.BoolVar(&f.noMDNS, "no-mdns", false, "no mDNS")
	flag.BoolVar(&f.noHolePunch, "no-holepunch", false, "NAT.DisableHolePunching")
	flag.BoolVar(&f.optOut, "optout", false, "never become proxy")
	flag.BoolVar(&f.answer, "answer", true, "the UA answers incoming calls")
	flag.Parse()
	if err := run(f); err != nil {
		say("ERROR %v", err)
		os.Exit(1)
	}
}

func run(f flags) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := node.Config{
		Domain: f.domain, KnownDomains: list(f.known), ListenAddrs: list(f.listen),
		NAT: node.NATConfig{Public: f.public, Relays: list(f.relays), DisableHolePunching: f.noHolePunch,
			ForceReachability: f.reach},
		Bootstrap:  node.BootstrapConfig{DisableMDNS: f.noMDNS, DisableCache: true, Peers: list(f.peers)},
		Global:     node.BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: list(f.globalPeers)},
		GlobalSeed: f.seed,
		SIP:        &node.SIPConfig{UDP: "127.0.0.1:5060", TCP: "127.0.0.1:5060"},
		Election:   node.ElectionConfig{OptOut: f.optOut},
		Logger:     log,
	}
	n, err := node.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	h := n.Host()
	h.SetStreamHandler(pingProtocol, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, io.LimitReader(s, 64))
	})
	h.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			say("CONN peer=%s path=%s addr=%s at=%d", c.RemotePeer(), connPath(c), c.RemoteMultiaddr(), time.Now().UnixMilli())
		},
		DisconnectedF: func(_ network.Network, c network.Conn) {
			say("DISCONN peer=%s path=%s at=%d", c.RemotePeer(), connPath(c), time.Now().UnixMilli())
		},
	})
	var addrs []string
	for _, a := range h.Addrs() {
		addrs = append(addrs, a.String()+"/p2p/"+h.ID().String())
	}
	say("READY %s addrs=%s", h.ID(), strings.Join(addrs, ","))

	go watch(ctx, n)
	var ua *sipbridge.UA
	if f.user != "" {
		mode := sipbridge.AnswerAuto
		if !f.answer {
			mode = sipbridge.AnswerBusy
		}
		ua, err = sipbridge.NewUA(f.user, n.Bridge().UDPAddr(), sipbridge.WithUALogger(log),
			sipbridge.WithUAAnswer(mode, 0))
		if err != nil {
			return err
		}
		defer ua.Close()
		go func() {
			for {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := ua.Register(rctx, time.Hour)
				cancel()
				if err == nil {
					say("REGISTERED %s after=%s", f.user, since())
					break
				}
				if ctx.Err() != nil {
					return
				}
				log.Warn("register failed, retrying", "err", err)
				time.Sleep(500 * time.Millisecond)
			}
			for {
				select {
				case <-ctx.Done():
					return
				case c := <-ua.Incoming():
					say("INCOMING from=%s callid=%s", c.Remote, c.CallID)
				}
			}
		}()
	}
	if f.control != "" {
		if err := syscall.Mkfifo(f.control, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		go control(ctx, f.control, n, ua, log)
	}
	<-ctx.Done()
	return nil
}

func since() time.Duration { return time.Since(start).Round(time.Millisecond) }

func connPath(c network.Conn) string {
	if c.Stat().Limited || node.IsRelayed(c.RemoteMultiaddr()) {
		return "relayed"
	}
	return "direct"
}

// watch reports relayed addresses, joining and proxy role changes.
func watch(ctx context.Context, n *node.Node) {
	seen := map[string]bool{}
	proxy, joined := false, false
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, a := range n.Host().Addrs() {
			if node.IsRelayed(a) && !seen[a.String()] {
				seen[a.String()] = true
				say("RELAYED %s/p2p/%s", a, n.ID())
			}
		}
		if !joined {
			select {
			case <-n.Joined():
				joined = true
				say("JOINED after=%s", since())
			default:
			}
		}
		if p := n.IsProxy(); p != proxy {
			proxy = p
			if p {
				say("PROXY after=%s", since())
			} else {
				say("NOTPROXY after=%s", since())
			}
		}
	}
}

// control reads commands from the FIFO at path until ctx ends.
func control(ctx context.Context, path string, n *node.Node, ua *sipbridge.UA, log *slog.Logger) {
	for ctx.Err() == nil {
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			say("ERROR control: %v", err)
			return
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 {
				continue
			}
			command(ctx, fields, n, ua, log)
		}
		_ = f.Close()
	}
}

func command(ctx context.Context, fields []string, n *node.Node, ua *sipbridge.UA, log *slog.Logger) {
	switch {
	case fields[0] == "call" && len(fields) == 2 && ua != nil:
		target := fields[1]
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		t0 := time.Now()
		c, err := ua.Call(cctx, target)
		if err != nil {
			say("CALL-FAIL target=%s err=%q", target, err)
			return
		}
		setup := time.Since(t0)
		say("CALL-OK target=%s setup_ms=%.1f", target, float64(setup.Microseconds())/1000)
		if err := c.Hangup(cctx); err != nil {
			say("BYE-FAIL err=%q", err)
		} else {
			say("BYE-OK")
		}
		for _, e := range ua.Ladder() {
			log.Info("ladder", "entry", e.String())
		}
	case fields[0] == "paths":
		h := n.Host()
		for _, p := range h.Network().Peers() {
			say("PATH peer=%s path=%s", p, n.PathTo(p))
		}
		say("PATHS-END")
	case fields[0] == "disconnect" && len(fields) == 2:
		p, err := peer.Decode(fields[1])
		if err != nil {
			say("ERROR disconnect: %v", err)
			return
		}
		done := make(chan struct{})
		go func() { _ = n.Host().Network().ClosePeer(p); close(done) }()
		select {
		case <-done:
			say("DISCONNECTED peer=%s", p)
		case <-time.After(5 * time.Second):
			say("DISCONNECTED peer=%s timeout=true", p)
		}
	case fields[0] == "lookup" && len(fields) == 2:
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		t0 := time.Now()
		rec, err := n.DomainProxies(lctx, fields[1])
		if err != nil {
			say("LOOKUP-FAIL domain=%s err=%q", fields[1], err)
			return
		}
		var ps []string
		for _, ai := range rec.Proxies {
			ps = append(ps, ai.ID.String())
		}
		say("LOOKUP-OK domain=%s ms=%.1f proxies=%s", fields[1], float64(time.Since(t0).Microseconds())/1000, strings.Join(ps, ","))
	case fields[0] == "dial" && len(fields) == 2:
		dial(ctx, n, fields[1])
	default:
		say("ERROR unknown command %q", strings.Join(fields, " "))
	}
}

// dial connects to addr (a relayed address is fine), sends a ping over a
// stream and waits up to 10 s for a direct connection to the peer.
func dial(ctx context.Context, n *node.Node, addr string) {
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		say("DIAL-FAIL err=%q", err)
		return
	}
	ai, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		say("DIAL-FAIL err=%q", err)
		return
	}
	h := n.Host()
	dctx, cancel := context.WithTimeout(network.WithAllowLimitedConn(ctx, "natnode-dial"), 15*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := h.Connect(dctx, *ai); err != nil {
		say("DIAL-FAIL peer=%s err=%q", ai.ID, err)
		return
	}
	s, err := h.NewStream(dctx, ai.ID, pingProtocol)
	if err == nil {
		_ = s.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err = s.Write([]byte("ping")); err == nil {
			_ = s.CloseWrite()
			var b []byte
			b, err = io.ReadAll(s)
			if err == nil && string(b) != "ping" {
				err = fmt.Errorf("echo %q", b)
			}
		}
		_ = s.Close()
	}
	if err != nil {
		say("DIAL-FAIL peer=%s err=%q", ai.ID, err)
		return
	}
	connected := time.Since(t0)
	first := n.PathTo(ai.ID).String()
	direct := time.Duration(-1)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if n.PathTo(ai.ID).Direct > 0 {
			direct = time.Since(t0)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	ms := func(d time.Duration) string {
		if d < 0 {
			return "-1"
		}
		return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000)
	}
	say("DIAL-OK peer=%s path=%s connect_ms=%s direct_ms=%s now=%s", ai.ID, first, ms(connected), ms(direct), n.PathTo(ai.ID))
}
