//go:build !linux

package sipbridge

import "net"

// setSocketBuffers sizes the UDP socket's receive and send buffers to n bytes (as far as
// the system allows).
func setSocketBuffers(c *net.UDPConn, n int) {
	_ = c.SetReadBuffer(n)
	_ = c.SetWriteBuffer(n)
}
