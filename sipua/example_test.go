package sipua_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipua"
)

// oneNode is a toy Locator for a lone node: bindings in a map.
type oneNode struct {
	mu sync.Mutex
	m  map[string][]domains.Contact
}

func (l *oneNode) Domain() string { return "pastry" }

func (l *oneNode) Register(_ context.Context, aor domains.AOR, cs []domains.Contact) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[aor.String()] = cs
	return nil
}

func (l *oneNode) Lookup(context.Context, domains.AOR) (*domains.Binding, error) {
	return nil, domains.ErrNotFound // every UA of this example is at the node itself
}

// Alice and bob register with one node; alice calls bob, he answers, she hangs up.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		panic(err)
	}
	defer h.Close()
	node, err := sipbridge.New(h, &oneNode{m: map[string][]domains.Contact{}},
		sipbridge.WithListen("127.0.0.1:0"), sipbridge.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	defer node.Close()

	alice, err := sipua.NewUA("sip:alice@pastry", node.UDPAddr(), sipua.WithUALogger(quiet))
	if err != nil {
		panic(err)
	}
	defer alice.Close()
	bob, err := sipua.NewUA("sip:bob@pastry", node.UDPAddr(), sipua.WithUALogger(quiet),
		sipua.WithUAAnswer(sipua.AnswerAuto, 10*time.Millisecond))
	if err != nil {
		panic(err)
	}
	defer bob.Close()
	if _, err := bob.Register(ctx, time.Hour); err != nil {
		panic(err)
	}
	call, err := alice.Call(ctx, "sip:bob@pastry")
	var failed *sipua.ErrCallFailed
	if errors.As(err, &failed) {
		fmt.Println("refused:", failed.Response.StatusCode)
		return
	} else if err != nil {
		panic(err)
	}
	fmt.Println("answered:", call.Responses[len(call.Responses)-1].StatusCode)
	<-bob.Incoming()
	fmt.Println("hangup:", call.Hangup(ctx))
	// Output:
	// answered: 200
	// hangup: <nil>
}
