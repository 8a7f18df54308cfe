//go:build linux

package sipbridge

import (
	"net"

	"golang.org/x/sys/unix"
)

// setSocketBuffers sizes the UDP socket's receive and send buffers to n bytes: a burst of
// calls (each INVITE, 18x, 200, ACK, BYE and 200 a datagram in and out) must not overflow
// the kernel's default 208 KiB while the reader is busy. The kernel caps SO_RCVBUF at
// net.core.rmem_max; a process allowed to (CAP_NET_ADMIN) takes the size past that cap
// with SO_RCVBUFFORCE, as Kamailio's udp_rcv_buf does, others get what the cap allows.
func setSocketBuffers(c *net.UDPConn, n int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, n)
		}
	})
}
