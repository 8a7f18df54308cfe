package mailbox_test

import (
	"context"
	"fmt"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/mailbox"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Two nodes of domain pastry: alice's node publishes her mailbox key, the
// other node stores a MESSAGE from bob while alice is offline; when her
// phone registers, her node fetches it and acknowledges it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var nodes []*mailbox.Mailbox
	var overlays []*domains.Overlay
	for range 2 {
		h, _ := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		defer h.Close()
		ov, err := domains.NewDomainOverlay(h, "pastry", domains.WithDHTOptions(
			dht.NamespacedValidator(domains.NSMail, domains.MailValidator{Domain: "pastry"}),
			dht.NamespacedValidator(domains.NSMailboxKey, domains.MailboxKeyValidator{Domain: "pastry"})))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer ov.Close()
		mb, _ := mailbox.New(ov.DHT(), "pastry", h.Peerstore().PrivKey(h.ID()))
		defer mb.Close()
		nodes, overlays = append(nodes, mb), append(overlays, ov)
		if len(overlays) == 2 {
			a := overlays[0].DHT().Host()
			_ = h.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()})
		}
	}
	for overlays[0].RoutingTableSize() == 0 || overlays[1].RoutingTableSize() == 0 {
		time.Sleep(10 * time.Millisecond)
	}

	userKey, _ := domains.GenerateUserKey() // from alice's line in the users file
	alice, _ := domains.ParseAOR("sip:alice@pastry")
	me := mailbox.Recipient{AOR: alice, UserKey: userKey}
	if err := nodes[0].Publish(ctx, me); err != nil {
		fmt.Println(err)
		return
	}
	_, err := nodes[1].Store(ctx, mailbox.Message{From: "sip:bob@bupt.example", To: "sip:alice@pastry",
		CallID: "a84b4c76e66710", CSeq: 1, ContentType: "text/plain", Body: []byte("call me")})
	fmt.Println("stored:", err == nil, "(the sender gets 202 Accepted)")

	batch, _ := nodes[0].Fetch(ctx, me)
	for _, m := range batch.Messages {
		fmt.Printf("from %s: %s\n", m.From, m.Body)
	}
	fmt.Println("acknowledged:", nodes[0].Ack(ctx, me, batch) == nil)
	// Output:
	// stored: true (the sender gets 202 Accepted)
	// from sip:bob@bupt.example: call me
	// acknowledged: true
}
