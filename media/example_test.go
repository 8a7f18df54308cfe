package media_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/media"
)

// Two nodes anchor one audio stream of a call: phone A sends an RTP packet to its node's
// port, node A carries it over libp2p to node B, which sends it to phone B.
func Example() {
	ip := netip.MustParseAddr("127.0.0.1")
	ha, _ := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	hb, _ := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	defer ha.Close()
	defer hb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = ha.Connect(ctx, peer.AddrInfo{ID: hb.ID(), Addrs: hb.Addrs()})

	ra, _ := media.New(ha, media.WithAddress(ip), media.WithPorts(41000, 41999))
	rb, _ := media.New(hb, media.WithAddress(ip), media.WithPorts(42000, 42999))
	defer ra.Close()
	defer rb.Close()

	key := media.Key{CallID: "a84b4c76e66710@pc33.example.org", Index: 0}
	sa, _ := ra.Open(key, "")      // the caller's node: its phone offered
	sb, _ := rb.Open(key, ha.ID()) // the callee's node: node A's offer opened it
	_ = sa.SetRemote(hb.ID())      // node A learns node B from the answer
	phoneA, _ := net.ListenUDP("udp", &net.UDPAddr{IP: ip.AsSlice()})
	phoneB, _ := net.ListenUDP("udp", &net.UDPAddr{IP: ip.AsSlice()})
	defer phoneA.Close()
	defer phoneB.Close()
	sa.SetPhone(phoneA.LocalAddr().(*net.UDPAddr).AddrPort(), netip.AddrPort{}, ip) // from phone A's SDP and SIP
	sb.SetPhone(phoneB.LocalAddr().(*net.UDPAddr).AddrPort(), netip.AddrPort{}, ip)

	rtpPort, _ := sa.Ports() // what phone A's SDP answer names
	packet := append([]byte{0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4}, make([]byte, 160)...)
	_, _ = phoneA.WriteToUDP(packet, &net.UDPAddr{IP: ip.AsSlice(), Port: rtpPort})
	buf := make([]byte, 2048)
	_ = phoneB.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := phoneB.ReadFromUDPAddrPort(buf)
	bPort, _ := sb.Ports()
	fmt.Println(n, err, int(from.Port()) == bPort)
	// Output: 172 <nil> true
}
