package siptls_test

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hiersip/hiersip/siptls"
)

// A node makes its self-signed certificate on first start, serves TLS with
// it, and a client that pins that certificate connects with the node's
// domain as the name to check.
func Example() {
	dir, err := os.MkdirTemp("", "siptls-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	cert, err := siptls.Certificate(siptls.WithSelfSigned(dir, "sip.example.test", "127.0.0.1"))
	if err != nil {
		panic(err)
	}
	serverConf, err := siptls.Server(cert)
	if err != nil {
		panic(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverConf)
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()

	clientConf, err := siptls.Client("sip.example.test", siptls.WithRootCAFile(filepath.Join(dir, siptls.CertFile)))
	if err != nil {
		panic(err)
	}
	c, err := tls.Dial("tcp", ln.Addr().String(), clientConf)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	state := c.ConnectionState()
	fmt.Println(state.PeerCertificates[0].DNSNames, state.Version >= tls.VersionTLS12)
	// Output: [sip.example.test] true
}
