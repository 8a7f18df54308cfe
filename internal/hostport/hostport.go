package hostport

import (
	"fmt"
	"net"
	"strconv"
)

// Check checks a host:port listen address; "" (none) is valid. The host may
// be empty (every address); the port is a number from 0 to 65535.
func Check(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: invalid port", addr)
	}
	return nil
}
