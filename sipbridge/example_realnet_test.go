package sipbridge_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipua"
)

// A node on a real network: bound to every address of its machine, advertising the public
// address of its router (a port forward), keeping phones behind NAT reachable with
// keep-alives, and keeping its registrations in a file across restarts.
func ExampleWithAdvertise() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dataDir, _ := os.MkdirTemp("", "hiersip-example")
	defer os.RemoveAll(dataDir)
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		panic(err)
	}
	defer h.Close()
	store := filepath.Join(dataDir, "registrations.json")
	start := func() *sipbridge.Bridge {
		b, err := sipbridge.New(h, locator{&directory{m: map[string]*domains.Binding{}}, h},
			sipbridge.WithListen("0.0.0.0:0"),
			sipbridge.WithAdvertise("203.0.113.7:5060"),
			sipbridge.WithNATKeepalive(sipbridge.DefaultNATKeepalive),
			sipbridge.WithRegistrationStore(store),
			sipbridge.WithLogger(quiet))
		if err != nil {
			panic(err)
		}
		return b
	}
	b := start()
	bob, _ := sipua.NewUA("sip:bob@pastry", "127.0.0.1:"+port(b.UDPAddr()), sipua.WithUALogger(quiet))
	defer bob.Close()
	if _, err := bob.Register(ctx, time.Hour); err != nil {
		panic(err)
	}
	fmt.Println("close:", b.Close()) // saves the registrations
	b = start()                      // restored: bob is served without registering again
	defer b.Close()
	fmt.Println("bound:", b.UDPAddr() == "0.0.0.0:"+port(b.UDPAddr()))
	// Output:
	// close: <nil>
	// bound: true
}

func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}
