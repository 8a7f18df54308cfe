package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipua"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
)

// An application that already runs a libp2p host, with protocols of its
// own, adds hiersip to it: the host becomes a node of domain "pastry", its
// SIP bridge the registrar of bob's softphone, and bob calls alice, whose
// softphone is registered with a node of another domain, "can". The
// application waits until its node is ready for calls to other domains
// before bob calls.
func Example_embedding() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	// Elsewhere: a node of domain "can", a long-lived entry point of the
	// global overlay (GlobalSeed), with alice's softphone.
	can, err := node.New(ctx, node.Config{
		Domain:      "can",
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		GlobalSeed:  true,
		SIP:         &node.SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Bootstrap:   node.BootstrapConfig{DisableMDNS: true, DisableCache: true},
		Global:      node.BootstrapConfig{DisableMDNS: true, DisableCache: true},
		Logger:      quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer can.Close()
	seed := can.Host().Addrs()[0].String() + "/p2p/" + can.ID().String()

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

	// hiersip joins the application's host (Close leaves the host running)
	// and waits until it can route calls to other domains: here it becomes
	// its domain's proxy and meets can's node in the global overlay.
	n, err := node.NewWithHost(ctx, app, node.Config{
		Domain:    "pastry",
		SIP:       &node.SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Bootstrap: node.BootstrapConfig{DisableMDNS: true, DisableCache: true},
		Global:    node.BootstrapConfig{DisableMDNS: true, DisableCache: true, Peers: []string{seed}},
		Logger:    quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	for _, nd := range []*node.Node{n, can} {
		if err := nd.WaitReady(ctx, node.ReadyGlobal); err != nil {
			log.Fatal(err)
		}
	}

	// alice's softphone registers with can's node, bob's with the
	// application's node.
	alice, err := sipua.NewUA("sip:alice@pku.can", can.Bridge().UDPAddr())
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := sipua.NewUA("sip:bob@bupt.pastry", n.Bridge().UDPAddr())
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()
	for _, ua := range []*sipua.UA{alice, bob} {
		res, err := ua.Register(ctx, time.Hour)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("registered", ua.AOR(), res.StatusCode, res.Reason)
	}

	// bob calls alice: the application's node finds can's proxy in the
	// global overlay and forwards the INVITE to it over libp2p.
	call, err := bob.Call(ctx, "sip:alice@pku.can")
	if err != nil {
		log.Fatal(err)
	}
	final := call.Responses[len(call.Responses)-1]
	fmt.Println("call answered:", final.StatusCode, final.Reason)
	if err := call.Hangup(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("hung up")

	// The application's own protocol runs on as before.
	s, err := can.Host().NewStream(ctx, app.ID(), "/myapp/hello/1.0.0")
	if err != nil {
		log.Fatal(err)
	}
	line, err := bufio.NewReader(s).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(line)

	// Output:
	// registered sip:alice@pku.can 200 OK
	// registered sip:bob@bupt.pastry 200 OK
	// call answered: 200 OK
	// hung up
	// hello from the application
}

// An application serves a node's status, metrics and web-station list on
// its own HTTP server, under a prefix.
func ExampleNewAdminHandler() {
	ctx := context.Background()
	n, err := node.New(ctx, node.Config{
		Domain:      "example",
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Bootstrap:   node.BootstrapConfig{DisableMDNS: true, DisableCache: true},
		Election:    node.ElectionConfig{Disable: true},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()

	admin, err := node.NewAdminHandler(n)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/hiersip/", http.StripPrefix("/hiersip", admin))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	res, err := http.Get(srv.URL + "/hiersip/status")
	if err != nil {
		log.Fatal(err)
	}
	var s node.Status
	err = json.NewDecoder(res.Body).Decode(&s)
	res.Body.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Domain, s.Role, s.PeerID == n.ID().String())

	res, err = http.Get(srv.URL + "/hiersip/metrics")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(strings.Contains(string(body), `hiersip_routing_table_peers{overlay="domain"} 0`))
	// Output:
	// example peer true
	// true
}
