package daemon

import (
	"crypto/tls"
	"errors"
	"net"

	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/siptls"
)

// sipEdgeOptions maps the settings of the TLS, WS and WSS listeners for phones
// (sip.tls, sip.ws, sip.wss, sip.tls_cert, sip.tls_key, sip.tls_names,
// sip.tls_client_auth, sip.tls_ca_file) onto bridge options, naming the first invalid
// setting. The certificate is loaded (or made, self-signed, in the data directory) only
// when a TLS or WSS listener is configured.
func (c Config) sipEdgeOptions() ([]sipbridge.Option, error) {
	s := c.SIP
	for _, a := range []struct{ key, addr string }{{"sip.tls", s.TLS}, {"sip.ws", s.WS}, {"sip.wss", s.WSS}} {
		if err := checkHostPort(a.key, a.addr); err != nil {
			return nil, err
		}
	}
	var opts []sipbridge.Option
	if s.WS != "" {
		opts = append(opts, sipbridge.WithWS(s.WS))
	}
	if s.TLS == "" && s.WSS == "" {
		return opts, nil
	}
	conf, err := c.tlsServerConfig()
	if err != nil {
		return nil, err
	}
	if s.TLS != "" {
		opts = append(opts, sipbridge.WithTLS(s.TLS, conf))
	}
	if s.WSS != "" {
		opts = append(opts, sipbridge.WithWSS(s.WSS, conf))
	}
	return opts, nil
}

// tlsServerConfig loads the certificate of sip.tls_cert and sip.tls_key, or keeps a
// self-signed one in the data directory, and builds the server configuration.
func (c Config) tlsServerConfig() (*tls.Config, error) {
	s := c.SIP
	var certOpt siptls.CertOption
	switch {
	case s.TLSCert != "" && s.TLSKey == "":
		return nil, &node.ConfigError{Field: "sip.tls_key", Err: errors.New("required with sip.tls_cert")}
	case s.TLSCert == "" && s.TLSKey != "":
		return nil, &node.ConfigError{Field: "sip.tls_cert", Err: errors.New("required with sip.tls_key")}
	case s.TLSCert != "":
		certOpt = siptls.WithFiles(s.TLSCert, s.TLSKey)
	case c.DataDir == "":
		return nil, &node.ConfigError{Field: "sip.tls_cert", Err: errors.New("required without a data directory (a self-signed certificate is kept there)")}
	default:
		certOpt = siptls.WithSelfSigned(c.DataDir, c.tlsNames()...)
	}
	copts := []siptls.CertOption{certOpt}
	if c.Logger != nil {
		copts = append(copts, siptls.WithLogger(c.Logger))
	}
	cert, err := siptls.Certificate(copts...)
	if err != nil {
		field := "sip.tls_cert"
		if s.TLSCert == "" {
			field = "sip.tls_names"
		}
		return nil, &node.ConfigError{Field: field, Err: err}
	}
	mode, err := siptls.ParseClientAuth(s.TLSClientAuth)
	if err != nil {
		return nil, &node.ConfigError{Field: "sip.tls_client_auth", Err: err}
	}
	if mode == siptls.ClientAuthRequire && s.TLSCAFile == "" {
		return nil, &node.ConfigError{Field: "sip.tls_ca_file", Err: errors.New("required with sip.tls_client_auth: require")}
	}
	conf, err := siptls.Server(cert, siptls.WithClientAuth(mode, s.TLSCAFile))
	if err != nil {
		return nil, &node.ConfigError{Field: "sip.tls_ca_file", Err: err}
	}
	return conf, nil
}

// tlsNames are the names of a self-signed certificate: sip.tls_names, else the host of
// sip.advertise and of the TLS/WSS listeners (when not a wildcard), and localhost.
func (c Config) tlsNames() []string {
	if len(c.SIP.TLSNames) > 0 {
		return c.SIP.TLSNames
	}
	var names []string
	add := func(h string) {
		if h == "" || h == "0.0.0.0" || h == "::" {
			return
		}
		for _, n := range names {
			if n == h {
				return
			}
		}
		names = append(names, h)
	}
	if h, _, err := net.SplitHostPort(c.SIP.Advertise); err == nil {
		add(h)
	} else {
		add(c.SIP.Advertise)
	}
	for _, a := range []string{c.SIP.TLS, c.SIP.WSS} {
		if h, _, err := net.SplitHostPort(a); err == nil {
			add(h)
		}
	}
	add("localhost")
	return names
}
