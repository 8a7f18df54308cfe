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
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/spf13/pflag"
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

	mux := http.NewServeMux()
	mux.Handle("/hiersip/", http.StripPrefix("/hiersip", node.NewAdminHandler(n)))
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

// The daemon's configuration: defaults, a YAML file, HIERSIP_ variables and
// flags, mapped onto a node Config.
func ExampleLoadDaemonConfig() {
	fs := pflag.NewFlagSet("node", pflag.ContinueOnError)
	node.AddDaemonFlags(fs)
	if err := fs.Parse([]string{"--domain", "example", "--sip-udp", "127.0.0.1:5070", "--bootstrap-mdns=false"}); err != nil {
		log.Fatal(err)
	}
	dc, err := node.LoadDaemonConfig("", fs) // "": no file
	if err != nil {
		log.Fatal(err)
	}
	dc.Logger = slog.New(slog.DiscardHandler)
	cfg, err := dc.NodeConfig()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Domain, cfg.SIP.UDP, cfg.SIP.TCP, cfg.Bootstrap.DisableMDNS, dc.Admin.Listen)

	dc.SIP.UDP = "127.0.0.1:x"
	fmt.Println(dc.Validate())
	// Output:
	// example 127.0.0.1:5070 127.0.0.1:5060 true 127.0.0.1:8080
	// config: sip.udp: "127.0.0.1:x": invalid port
}
