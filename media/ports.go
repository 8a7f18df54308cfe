package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// portPool hands out pairs of UDP ports (even RTP port, RTCP port = RTP + 1) from a range.
// It is guarded by the relay's mutex.
type portPool struct {
	lo, hi int // inclusive
	next   int
	used   map[int]bool // RTP ports in use
}

func newPortPool(lo, hi int) *portPool {
	if lo%2 == 1 {
		lo++
	}
	return &portPool{lo: lo, hi: hi, next: lo, used: map[int]bool{}}
}

// pairs is the number of port pairs in the range.
func (p *portPool) pairs() int {
	if p.hi < p.lo+1 {
		return 0
	}
	return (p.hi - p.lo + 1) / 2
}

// open binds the next free pair on ip. Ports another program holds are skipped.
func (p *portPool) open(ip netip.Addr) (rtp, rtcp *net.UDPConn, err error) {
	n := p.pairs()
	for range n {
		port := p.next
		p.next += 2
		if p.next+1 > p.hi {
			p.next = p.lo
		}
		if p.used[port] {
			continue
		}
		a, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return nil, nil, fmt.Errorf("media: listen %v:%d: %w", ip, port, err)
		}
		b, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port+1))))
		if err != nil {
			_ = a.Close()
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return nil, nil, fmt.Errorf("media: listen %v:%d: %w", ip, port+1, err)
		}
		p.used[port] = true
		return a, b, nil
	}
	return nil, nil, ErrNoPorts
}

func (p *portPool) release(rtpPort int) { delete(p.used, rtpPort) }
