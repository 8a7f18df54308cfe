package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/hiersip/hiersip/internal/hostport"
	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/hiersip/hiersip/sipdns"
	"github.com/hiersip/hiersip/siptls"
)

// sipEdgeOptions maps the settings of the TLS, WS and WSS listeners for phones
// (sip.tls, sip.ws, sip.wss, sip.tls_cert, sip.tls_key, sip.tls_names,
// sip.tls_client_auth, sip.tls_ca_file) onto bridge options, naming the first invalid
// setting. The certificate is loaded (or made, self-signed, in the data directory) only
// when a TLS or WSS listener is configured.
func (c Config) sipEdgeOptions() ([]sipbridge.Option, error) {
	s := c.SIP
	for _, a := range []struct{ key, addr string }{{"sip.tls", s.TLS}, {"sip.ws", s.WS}, {"sip.wss", s.WSS}, {"sip.public.udp", s.Public.UDP}, {"sip.public.tcp", s.Public.TCP}, {"sip.public.tls", s.Public.TLS}} {
		if err := hostport.Check(a.addr); err != nil {
			return nil, &node.ConfigError{Field: a.key, Err: err}
		}
	}
	var opts []sipbridge.Option
	if s.Outbound.Enabled {
		o, err := c.outboundOption()
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	if o, err := c.outboundTLSOption(); err != nil {
		return nil, err
	} else if o != nil {
		opts = append(opts, o)
	}
	if s.WS != "" {
		opts = append(opts, sipbridge.WithWS(s.WS))
	}
	if s.Public.UDP != "" {
		opts = append(opts, sipbridge.WithPublic(s.Public.UDP))
	}
	if s.Public.TCP != "" {
		opts = append(opts, sipbridge.WithPublicTCP(s.Public.TCP))
	}
	if s.TLS == "" && s.WSS == "" && s.Public.TLS == "" {
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
	if s.Public.TLS != "" {
		opts = append(opts, sipbridge.WithPublicTLS(s.Public.TLS, conf))
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

// outboundOption builds the resolver of sip.outbound.* and the bridge option that routes
// calls out of the overlay with it. The resolver holds no goroutine or socket between
// questions: it needs no closing beyond the node's life.
func (c Config) outboundOption() (sipbridge.Option, error) {
	o := c.SIP.Outbound
	pol := &sipdns.Policy{Allow: o.Allow, Deny: o.Deny}
	if len(o.Routes) > 0 {
		pol.Routes = map[string]string{}
		for _, r := range o.Routes {
			suffix, uri, ok := strings.Cut(r, "=")
			if !ok || strings.TrimSpace(suffix) == "" || strings.TrimSpace(uri) == "" {
				return nil, &node.ConfigError{Field: "sip.outbound.routes", Err: fmt.Errorf("%q: want suffix=sip:host[:port]", r)}
			}
			pol.Routes[strings.TrimSpace(suffix)] = strings.TrimSpace(uri)
		}
	}
	if o.DenyInternal {
		pol.DenyAddrs = sipdns.DenyInternal
	}
	if err := pol.Validate(); err != nil {
		field := "sip.outbound.allow"
		switch {
		case strings.Contains(err.Error(), "route"):
			field = "sip.outbound.routes"
		case len(o.Deny) > 0:
			field = "sip.outbound.deny"
		}
		return nil, &node.ConfigError{Field: field, Err: err}
	}
	if o.TryTimeout < 0 {
		return nil, &node.ConfigError{Field: "sip.outbound.try_timeout", Err: fmt.Errorf("%v is negative", o.TryTimeout)}
	}
	ropts := []sipdns.Option{sipdns.WithPolicy(pol)}
	for _, o := range []struct {
		field string
		set   bool
		opt   sipdns.Option
	}{
		{"sip.outbound.dns", len(o.DNS) > 0, sipdns.WithServers(o.DNS...)},
		{"sip.outbound.transports", len(o.Transports) > 0, sipdns.WithTransports(o.Transports...)},
	} {
		if !o.set {
			continue
		}
		if _, err := sipdns.New(o.opt); err != nil {
			return nil, &node.ConfigError{Field: o.field, Err: err}
		}
		ropts = append(ropts, o.opt)
	}
	if c.Logger != nil {
		ropts = append(ropts, sipdns.WithLogger(c.Logger))
	}
	r, err := sipdns.New(ropts...)
	if err != nil {
		return nil, &node.ConfigError{Field: "sip.outbound", Err: err}
	}
	return sipbridge.WithOutbound(r, o.TryTimeout), nil
}

// outboundTLSOption is the client configuration for servers reached over TLS (nil when
// sip.outbound.transports names no tls): verified against sip.outbound.tls_ca_file or the
// system's roots, for the SIP domain (the bridge sets it per connection).
func (c Config) outboundTLSOption() (sipbridge.Option, error) {
	o := c.SIP.Outbound
	outTLS := o.Enabled && slices.ContainsFunc(o.Transports, func(t string) bool { return strings.EqualFold(t, "tls") })
	if !outTLS && c.SIP.Public.TLS == "" {
		return nil, nil // no TLS connection to other servers to open
	}
	if outTLS && c.SIP.TLS == "" && c.SIP.Public.TLS == "" {
		return nil, &node.ConfigError{Field: "sip.outbound.transports", Err: errors.New("tls needs sip.tls or sip.public.tls (the node's TLS transport)")}
	}
	var copts []siptls.ClientOption
	if o.TLSCAFile != "" {
		copts = append(copts, siptls.WithRootCAFile(o.TLSCAFile))
	}
	conf, err := siptls.Client("", copts...)
	if err != nil {
		return nil, &node.ConfigError{Field: "sip.outbound.tls_ca_file", Err: err}
	}
	return sipbridge.WithTLSClient(conf), nil
}
