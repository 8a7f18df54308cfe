package sipbridge_test

import (
	"fmt"
	"os"

	"github.com/libp2p/go-libp2p"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipdns"
	"github.com/hiersip/hiersip/siptls"
)

// A node that serves phones over TLS and browsers over WSS with a self-signed
// certificate, answers ordinary SIP servers on a public address, and routes calls to
// other SIP domains by DNS.
func Example_edges() {
	dataDir, err := os.MkdirTemp("", "hiersip-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dataDir)
	cert, err := siptls.Certificate(siptls.WithSelfSigned(dataDir, "127.0.0.1"))
	if err != nil {
		panic(err)
	}
	conf, err := siptls.Server(cert)
	if err != nil {
		panic(err)
	}
	resolver, err := sipdns.New(sipdns.WithPolicy(&sipdns.Policy{DenyAddrs: sipdns.DenyInternal}))
	if err != nil {
		panic(err)
	}
	defer resolver.Close()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		panic(err)
	}
	defer h.Close()
	b, err := sipbridge.New(h, locator{dir: &directory{m: map[string]*domains.Binding{}}, h: h},
		sipbridge.WithListen("127.0.0.1:0"),
		sipbridge.WithTLS("127.0.0.1:0", conf),
		sipbridge.WithWSS("127.0.0.1:0", conf),
		sipbridge.WithPublic("127.0.0.1:0"),
		sipbridge.WithOutbound(resolver, 0))
	if err != nil {
		panic(err)
	}
	defer b.Close()
	fmt.Println(b.TLSAddr() != "", b.WSSAddr() != "", b.PublicAddr() != "")
	// Output: true true true
}
