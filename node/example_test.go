package node_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
)

// An application that already runs a libp2p host, with protocols of its
// own, adds hiersip to it: the host becomes a node of domain "example", its
// SIP bridge the registrar of bob's softphone, and bob calls alice, whose
// softphone is registered with a second node.
func Example_embedding() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	// The application's host and its own protocol.
	app, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		log.Fatal(err)
	}
	defer app.Close()
	app.SetStreamHandler("/myapp/hello/1.0.0", func(s network.Stream) {
		defer s.Close()
		fmt.Fprintln(s, "hello from the application")
	})

	// hiersip joins the application's host (Close leaves the host running).
	cfg := node.Config{
		Domain:    "example",
		SIP:       &node.SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Bootstrap: node.BootstrapConfig{DisableMDNS: true, DisableCache: true},
		Logger:    quiet,
	}
	n, err := node.NewWithHost(ctx, app, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()

	// A second node, with a host of its own, bootstraps from the first.
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.Bootstrap.Peers = []string{app.Addrs()[0].String() + "/p2p/" + app.ID().String()}
	other, err := node.New(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	<-n.Joined()
	<-other.Joined()

	// alice's softphone registers with the second node, bob's with the
	// application's node.
	alice, err := sipbridge.NewUA("sip:alice@example", other.Bridge().UDPAddr(), sipbridge.WithUALogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := sipbridge.NewUA("sip:bob@example", n.Bridge().UDPAddr(), sipbridge.WithUALogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()
	for _, ua := range []*sipbridge.UA{alice, bob} {
		res, err := ua.Register(ctx, time.Hour)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("registered", ua.AOR(), res.StatusCode, res.Reason)
	}

	// bob calls alice: the application's node looks her up in the domain
	// overlay and forwards the INVITE to the second node over libp2p.
	var call *sipbridge.Call
	for {
		if call, err = bob.Call(ctx, "sip:alice@example"); err == nil {
			break
		}
		if ctx.Err() != nil {
			log.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // alice's binding is not stored yet: poll
	}
	final := call.Responses[len(call.Responses)-1]
	fmt.Println("call answered:", final.StatusCode, final.Reason)
	if err := call.Hangup(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("hung up")

	// The application's own protocol runs on as before.
	s, err := other.Host().NewStream(ctx, app.ID(), "/myapp/hello/1.0.0")
	if err != nil {
		log.Fatal(err)
	}
	line, err := bufio.NewReader(s).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(line)

	// Output:
	// registered sip:alice@example 200 OK
	// registered sip:bob@example 200 OK
	// call answered: 200 OK
	// hung up
	// hello from the application
}
