package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hiersip/hiersip/bootstrap"
	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p"
)

func main() {
	listen := flag.String("listen", "/ip4/0.0.0.0/tcp/0", "libp2p listen multiaddr")
	domain := flag.String("domain", "pastry", "comma-separated domains to join (\"global\" for the global overlay)")
	flag.Parse()
	if err := run(*listen, strings.Split(*domain, ",")); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
}

func run(listen string, domainList []string) error {
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var boots []*bootstrap.Bootstrapper
	for _, domain := range domainList {
		onEvent := func(ev bootstrap.Event) {
			after := time.Since(start).Round(time.Millisecond)
			switch ev.Kind {
			case bootstrap.EventFound:
				say("FOUND %s source=%s domain=%s after=%s", ev.Peer, ev.Source, domain, after)
			case bootstrap.EventConnected:
				say("CONNECTED %s source=%s domain=%s after=%s", ev.Peer, ev.Source, domain, after)
			case bootstrap.EventFailed:
				say("FAILED %s source=%s domain=%s err=%q", ev.Peer, ev.Source, domain, ev.Err)
			case bootstrap.EventJoined:
				say("JOINED source=%s domain=%s after=%s", ev.Source, domain, after)
			}
		}
		// Joined means what it means for a node: the domain's DHT (or the
		// global overlay's) has a peer in its routing table.
		var ov *domains.Overlay
		if domain == domains.GlobalName {
			ov, err = domains.NewGlobalOverlay(h)
		} else {
			ov, err = domains.NewDomainOverlay(h, domain)
		}
		if err != nil {
			return err
		}
		defer ov.Close()
		b, err := bootstrap.New(h, domain, bootstrap.WithMDNS(),
			bootstrap.WithBackoff(100*time.Millisecond, 2*time.Second),
			bootstrap.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))),
			bootstrap.WithEventHook(onEvent), bootstrap.WithJoined(ov.Joined), bootstrap.WithPeers(ov.Peers))
		if err != nil {
			return err
		}
		if err := b.Start(ctx); err != nil {
			return err
		}
		defer b.Close()
		boots = append(boots, b)
	}
	var services []string
	for _, d := range domainList {
		services = append(services, bootstrap.MDNSServiceName(d))
	}
	say("READY %s services=%s addrs=%v", h.ID(), strings.Join(services, ","), h.Addrs())
	<-ctx.Done()
	var errs []error
	for _, b := range boots {
		errs = append(errs, b.Close())
	}
	return errors.Join(errs...)
}
