// Command mdnsnode is a test helper: it starts a libp2p host and a
// domains.Bootstrapper with mDNS only, and prints one line per event:
//
//	READY <peer ID>
//	FOUND <peer ID> source=<source> after=<duration since start>
//	CONNECTED <peer ID> source=<source> after=<duration>
//	FAILED <peer ID> source=<source> err=<error>
//	JOINED source=<source> after=<duration>
//
// It runs until SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p"
)

func main() {
	listen := flag.String("listen", "/ip4/0.0.0.0/tcp/0", "libp2p listen multiaddr")
	domain := flag.String("domain", "pastry", "domain to join")
	flag.Parse()
	if err := run(*listen, *domain); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
}

func run(listen, domain string) error {
	h, err := libp2p.New(libp2p.ListenAddrStrings(listen))
	if err != nil {
		return err
	}
	defer h.Close()

	var mu sync.Mutex // one line at a time
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	start := time.Now()
	cfg := domains.BootstrapDefaultConfig(domain)
	cfg.MinBackoff = 100 * time.Millisecond
	cfg.MaxBackoff = 2 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.OnEvent = func(ev domains.BootstrapEvent) {
		after := time.Since(start).Round(time.Millisecond)
		switch ev.Kind {
		case domains.BootstrapFound, domains.BootstrapConnected:
			say("%s %s source=%s after=%s", map[domains.BootstrapEventKind]string{
				domains.BootstrapFound: "FOUND", domains.BootstrapConnected: "CONNECTED"}[ev.Kind], ev.Peer, ev.Source, after)
		case domains.BootstrapFailed:
			say("FAILED %s source=%s err=%q", ev.Peer, ev.Source, ev.Err)
		case domains.BootstrapJoined:
			say("JOINED source=%s after=%s", ev.Source, after)
		}
	}
	b, err := domains.NewBootstrapper(h, cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := b.Start(ctx); err != nil {
		return err
	}
	say("READY %s service=%s addrs=%v", h.ID(), domains.MDNSServiceName(domain), h.Addrs())
	<-ctx.Done()
	return b.Close()
}
