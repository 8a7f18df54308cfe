package siptls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
)

// ClientAuth says what a server asks of its clients' certificates.
type ClientAuth string

// Client certificate modes, as written in configuration.
const (
	// ClientAuthNone: no client certificate is asked for (phones
	// authenticate with digest inside the TLS connection).
	ClientAuthNone ClientAuth = "none"
	// ClientAuthRequest: a certificate is asked for but not required; one
	// that is given is verified against the CA file when there is one.
	ClientAuthRequest ClientAuth = "request"
	// ClientAuthRequire: a certificate signed by the CA file is required
	// (mutual TLS between servers, RFC 5922 §7.3).
	ClientAuthRequire ClientAuth = "require"
)

// ParseClientAuth reads a mode as written in configuration ("" is none).
func ParseClientAuth(s string) (ClientAuth, error) {
	switch m := ClientAuth(strings.ToLower(strings.TrimSpace(s))); m {
	case "", ClientAuthNone:
		return ClientAuthNone, nil
	case ClientAuthRequest, ClientAuthRequire:
		return m, nil
	}
	return "", fmt.Errorf("%w: client_auth %q (want none, request or require)", ErrConfig, s)
}

type serverConfig struct {
	auth   ClientAuth
	caFile string
}

// ServerOption configures Server.
type ServerOption func(*serverConfig) error

// WithClientAuth sets the client certificate mode and the CA file (PEM)
// client certificates are verified against; require needs a CA file.
func WithClientAuth(mode ClientAuth, caFile string) ServerOption {
	return func(c *serverConfig) error {
		m, err := ParseClientAuth(string(mode))
		if err != nil {
			return err
		}
		if m == ClientAuthRequire && caFile == "" {
			return fmt.Errorf("%w: client_auth require needs client_ca", ErrConfig)
		}
		c.auth, c.caFile = m, caFile
		return nil
	}
}

// Server returns a tls.Config that serves cert (TLS 1.2 or later), for
// tls.NewListener around a SIP-over-TLS or WSS listener.
func Server(cert tls.Certificate, opts ...ServerOption) (*tls.Config, error) {
	c := serverConfig{auth: ClientAuthNone}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if len(cert.Certificate) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrConfig)
	}
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.NoClientCert,
	}
	if c.caFile != "" {
		pool, err := loadPool(c.caFile)
		if err != nil {
			return nil, err
		}
		conf.ClientCAs = pool
	}
	switch {
	case c.auth == ClientAuthRequire:
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	case c.auth == ClientAuthRequest && c.caFile != "":
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	case c.auth == ClientAuthRequest:
		conf.ClientAuth = tls.RequestClientCert
	}
	return conf, nil
}

type clientConfig struct {
	caFile     string
	cert       *tls.Certificate
	identities func(serverName string) []string
}

// ClientOption configures Client.
type ClientOption func(*clientConfig) error

// WithRootCAFile verifies servers against the certificates in a PEM file
// instead of the system's roots (a private CA, or a peer's self-signed
// certificate).
func WithRootCAFile(path string) ClientOption {
	return func(c *clientConfig) error { c.caFile = path; return nil }
}

// WithClientCertificate presents cert when a server asks for one.
func WithClientCertificate(cert tls.Certificate) ClientOption {
	return func(c *clientConfig) error { c.cert = &cert; return nil }
}

// WithIdentities makes the client accept a server whose certificate names
// any of identities(serverName), where serverName is the name the
// connection was opened with (for a dial by IP address, the address). A
// proxy that resolved a SIP domain with sipdns and dials the address gives
// the domain back here (RFC 5922 §4: the identity to check is the SIP
// domain). The chain is still verified against the roots.
func WithIdentities(identities func(serverName string) []string) ClientOption {
	return func(c *clientConfig) error { c.identities = identities; return nil }
}

// Client returns a tls.Config for connections to SIP servers: the server's
// certificate is verified against the system's roots (or WithRootCAFile)
// and must name serverName, the SIP domain, which is also sent as SNI. An
// empty serverName leaves both to the dialer (sipgo sets the host it
// dials).
func Client(serverName string, opts ...ClientOption) (*tls.Config, error) {
	var c clientConfig
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if c.caFile != "" {
		pool, err := loadPool(c.caFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	if c.cert != nil {
		conf.Certificates = []tls.Certificate{*c.cert}
	}
	if c.identities != nil {
		roots := conf.RootCAs
		ids := c.identities
		// Go checks the host name before VerifyConnection runs: turn that
		// check off and do the whole verification here.
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyIdentities(cs, roots, ids(cs.ServerName))
		}
	}
	return conf, nil
}

func verifyIdentities(cs tls.ConnectionState, roots *x509.CertPool, names []string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("siptls: server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("siptls: server certificate: %w", err)
	}
	for _, n := range names {
		if leaf.VerifyHostname(n) == nil {
			return nil
		}
	}
	return fmt.Errorf("siptls: server certificate names none of %q (it names %q)", names, leaf.DNSNames)
}

func loadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: CA file: %v", ErrConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrCertificate, path)
	}
	return pool, nil
}
