package node

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/sipbridge"
)

// TestResourceLimits checks that a node's host limits hiersip's protocols as ResourceLimits
// says, and its bridge tighter still: a peer cannot hold more than 4 inbound SIP streams at
// once.
func TestResourceLimits(t *testing.T) {
	l := ResourceLimits("pastry")
	for _, p := range []protocol.ID{sipbridge.ProtocolID, media.ProtocolID, election.HelloProtocol, "/hiersip/pastry/kad/1.0.0", "/hiersip/global/kad/1.0.0"} {
		if _, ok := l.Protocol[p]; !ok {
			t.Errorf("no protocol limit for %s", p)
		}
		if _, ok := l.ProtocolPeer[p]; !ok {
			t.Errorf("no protocol-peer limit for %s", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := New(ctx, Config{Domain: "pastry", ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true}, Election: ElectionConfig{Disable: true},
		SIP: &SIPConfig{UDP: "127.0.0.1:0"}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	other, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Connect(ctx, peer.AddrInfo{ID: n.Host().ID(), Addrs: n.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	// A stream the node accepted stays open and silent (a read times out); one the resource
	// manager refused is reset.
	accepted, refused := 0, error(nil)
	for i := 0; i < 32 && refused == nil; i++ {
		s, err := other.NewStream(ctx, n.Host().ID(), sipbridge.ProtocolID)
		if err != nil {
			refused = err
			break
		}
		defer s.Reset()
		if _, err := s.Write([]byte("\r\n")); err != nil {
			refused = err
			break
		}
		_ = s.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = s.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			accepted++
			continue
		}
		refused = err
	}
	// the bridge's own cap (sipbridge.ConnLimits.MaxStreamsPerPeer) is the tighter one
	want := min(int(ResourceLimits("pastry").ProtocolPeer[sipbridge.ProtocolID].StreamsInbound), sipbridge.DefaultConnLimits().MaxStreamsPerPeer)
	t.Logf("inbound SIP streams of one peer: %d accepted, the next refused (%v)", accepted, refused)
	if accepted != want || refused == nil {
		t.Fatalf("accepted %d inbound SIP streams of one peer, want %d and then a refusal (got %v)", accepted, want, refused)
	}
}
