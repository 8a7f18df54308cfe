package sipua_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/mailbox"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipua"
)

// devicesNode is a toy DeviceLocator for a lone node: no other node serves a device.
type devicesNode struct{ oneNode }

func (l *devicesNode) LookupDevices(context.Context, domains.AOR) (*domains.DeviceSet, error) {
	return nil, domains.ErrNotFound
}

// memBox is a toy MessageBox: messages wait in memory.
type memBox struct {
	mu   sync.Mutex
	msgs map[string][]mailbox.Delivered
}

func (m *memBox) Keep(_ context.Context, msg mailbox.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs[msg.To] = append(m.msgs[msg.To], mailbox.Delivered{From: msg.From, To: msg.To, CallID: msg.CallID,
		CSeq: msg.CSeq, ContentType: msg.ContentType, Body: msg.Body, Time: time.Now()})
	return nil
}

func (m *memBox) Waiting(_ context.Context, aor domains.AOR) ([]mailbox.Delivered, func(context.Context) error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.msgs[aor.String()], func(context.Context) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.msgs, aor.String())
		return nil
	}, nil
}

// Alice has two devices; bob calls her: both ring, the desk phone answers and the laptop
// is cancelled. Then bob writes to carol, who is offline: the node keeps the message
// (202) and hands it to carol's phone when it registers.
func ExampleWithUAInstance() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		panic(err)
	}
	defer h.Close()
	node, err := sipbridge.New(h, &devicesNode{oneNode{m: map[string][]domains.Contact{}}},
		sipbridge.WithListen("127.0.0.1:0"), sipbridge.WithLogger(quiet),
		sipbridge.WithMessageBox(&memBox{msgs: map[string][]mailbox.Delivered{}}))
	if err != nil {
		panic(err)
	}
	defer node.Close()
	ua := func(aor, instance string, mode sipua.AnswerMode) *sipua.UA {
		u, err := sipua.NewUA(aor, node.UDPAddr(), sipua.WithUALogger(quiet),
			sipua.WithUAInstance(instance), sipua.WithUAAnswer(mode, 200*time.Millisecond))
		if err != nil {
			panic(err)
		}
		if _, err := u.Register(ctx, time.Hour); err != nil {
			panic(err)
		}
		return u
	}
	desk := ua("sip:alice@pastry", "<urn:uuid:00000000-0000-0000-0000-00000000d35c>", sipua.AnswerAuto)
	defer desk.Close()
	laptop := ua("sip:alice@pastry", "<urn:uuid:00000000-0000-0000-0000-0000001a7709>", sipua.AnswerRingOnly)
	defer laptop.Close()
	bob := ua("sip:bob@pastry", "", sipua.AnswerAuto)
	defer bob.Close()

	c, err := bob.Call(ctx, "sip:alice@pastry")
	if err != nil {
		panic(err)
	}
	fmt.Println("desk answered:", (<-desk.Incoming()).CallID == c.CallID)
	for cancelled := false; !cancelled; time.Sleep(10 * time.Millisecond) {
		for _, e := range laptop.Ladder() {
			cancelled = cancelled || (e.CallID == c.CallID && strings.HasPrefix(e.First, "CANCEL "))
		}
	}
	fmt.Println("laptop cancelled")
	_ = c.Hangup(ctx)

	res, err := bob.Message(ctx, "sip:carol@pastry", "call me back")
	if err != nil {
		panic(err)
	}
	fmt.Println("to carol, offline:", res.StatusCode)
	carol := ua("sip:carol@pastry", "<urn:uuid:00000000-0000-0000-0000-0000000ca201>", sipua.AnswerAuto)
	defer carol.Close()
	fmt.Printf("carol's phone got: %q\n", (<-carol.Messages()).Body)
	// Output:
	// desk answered: true
	// laptop cancelled
	// to carol, offline: 202
	// carol's phone got: "call me back"
}
