package sipbridge_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipua"
)

// directory is a toy Locator shared by the example's two nodes; a real node uses its
// domain's kad-dht.
type directory struct {
	mu sync.Mutex
	m  map[string]*domains.Binding
}

type locator struct {
	dir *directory
	h   host.Host
}

func (l locator) Domain() string { return "pastry" }

func (l locator) Register(_ context.Context, aor domains.AOR, cs []domains.Contact) error {
	l.dir.mu.Lock()
	defer l.dir.mu.Unlock()
	b := &domains.Binding{AOR: aor.String(), Peer: l.h.ID(), Addrs: l.h.Addrs(), Contacts: cs, Removed: len(cs) == 0}
	for _, c := range cs {
		b.Expires = c.Expires
	}
	l.dir.m[aor.String()] = b
	return nil
}

func (l locator) Lookup(_ context.Context, aor domains.AOR) (*domains.Binding, error) {
	l.dir.mu.Lock()
	defer l.dir.mu.Unlock()
	if b, ok := l.dir.m[aor.String()]; ok {
		return b, nil
	}
	return nil, domains.ErrNotFound
}

// Two nodes of domain "pastry" on loopback; alice (at node 1) calls bob (at node 2).
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := &directory{m: map[string]*domains.Binding{}}
	var nodes []*sipbridge.Bridge
	for i := 0; i < 2; i++ {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			panic(err)
		}
		defer h.Close()
		b, err := sipbridge.New(h, locator{dir, h}, sipbridge.WithListen("127.0.0.1:0"), sipbridge.WithLogger(quiet))
		if err != nil {
			panic(err)
		}
		defer b.Close()
		nodes = append(nodes, b) // no explicit connect: the binding carries the node's addresses
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
	fmt.Println("answered:", call.Responses[len(call.Responses)-1].StatusCode)
	<-bob.Incoming()
	fmt.Println("hangup:", call.Hangup(ctx))
	// Output:
	// answered: 200
	// hangup: <nil>
}

// The same call with its media anchored at both nodes (WithMedia): each phone's SDP names
// its own node's port, and the nodes carry the RTP between them over libp2p.
func ExampleWithMedia() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := &directory{m: map[string]*domains.Binding{}}
	var nodes []*sipbridge.Bridge
	for i := 0; i < 2; i++ {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			panic(err)
		}
		defer h.Close()
		r, err := media.New(h, media.WithAddress(netip.MustParseAddr("127.0.0.1")), media.WithPorts(43000, 43999))
		if err != nil {
			panic(err)
		}
		defer r.Close() // after the bridge: the relay is the caller's
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
	for call.Media()[0].Received < 10 && ctx.Err() == nil { // bob's tone, through both nodes
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("alice hears bob; sessions at alice's node:", nodes[0].Media().Stats().Sessions)
	fmt.Println("hangup:", call.Hangup(ctx))
	// Output:
	// alice hears bob; sessions at alice's node: 1
	// hangup: <nil>
}
