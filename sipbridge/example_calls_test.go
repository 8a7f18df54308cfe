package sipbridge_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipua"
)

// The calls a node is in, as its status page shows them: alice (at node 1) calls bob (at
// node 2) with media anchored at both; node 1 lists the call until the BYE.
func ExampleBridge_Calls() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := &directory{m: map[string]*domains.Binding{}}
	var nodes []*sipbridge.Bridge
	for range 2 {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			panic(err)
		}
		defer h.Close()
		r, err := media.New(h, media.WithAddress(netip.MustParseAddr("127.0.0.1")), media.WithPorts(44000, 44999))
		if err != nil {
			panic(err)
		}
		defer r.Close()
		b, err := sipbridge.New(h, locator{dir, h}, sipbridge.WithListen("127.0.0.1:0"), sipbridge.WithLogger(quiet),
			sipbridge.WithMedia(r))
		if err != nil {
			panic(err)
		}
		defer b.Close()
		nodes = append(nodes, b)
	}
	alice, _ := sipua.NewUA("sip:alice@pastry", nodes[0].UDPAddr(), sipua.WithUALogger(quiet))
	defer alice.Close()
	bob, _ := sipua.NewUA("sip:bob@pastry", nodes[1].UDPAddr(), sipua.WithUALogger(quiet),
		sipua.WithUAAnswer(sipua.AnswerAuto, 10*time.Millisecond))
	defer bob.Close()
	if _, err := bob.Register(ctx, time.Hour); err != nil {
		panic(err)
	}
	call, err := alice.Call(ctx, "sip:bob@pastry")
	if err != nil {
		panic(err)
	}
	<-bob.Incoming()
	for _, c := range nodes[0].Calls() {
		fmt.Println(c.From, "->", c.To, c.State, c.Direction, "media anchored:", c.Media)
	}
	fmt.Println("hangup:", call.Hangup(ctx))
	for len(nodes[0].Calls()) > 0 && ctx.Err() == nil { // the BYE passes node 1
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("calls after the BYE:", len(nodes[0].Calls()))
	// Output:
	// sip:alice@pastry -> sip:bob@pastry confirmed out media anchored: true
	// hangup: <nil>
	// calls after the BYE: 0
}
