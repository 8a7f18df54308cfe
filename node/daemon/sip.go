package daemon

import (
	"fmt"

	"github.com/hiersip/hiersip/node"
	"github.com/hiersip/hiersip/sipbridge"
)

// sipConfig maps the SIP settings onto a node.SIPConfig (nil when both
// listen addresses are empty: no SIP). It reads the users file, once, and
// builds the bridge options of the settings node.SIPConfig has no field
// for, naming the first invalid one; node.Config checks the rest.
func (c Config) sipConfig() (*node.SIPConfig, error) {
	if c.SIP.UDP == "" && c.SIP.TCP == "" && c.SIP.TLS == "" && c.SIP.WS == "" && c.SIP.WSS == "" {
		return nil, nil
	}
	dl := c.SIP.Limits
	limits := sipbridge.Limits{
		SourceRate: dl.SourceRate, SourceBurst: dl.SourceBurst, PeerRate: dl.PeerRate, PeerBurst: dl.PeerBurst,
		DialogFactor: dl.DialogFactor, AuthFailures: dl.AuthFailures, AuthWindow: dl.AuthWindow,
		MaxSourceTx: dl.MaxSourceTx, MaxUATx: dl.MaxTransactions,
	}
	if dl.MaxPeerTx < 1 {
		return nil, &node.ConfigError{Field: "sip.limits.max_peer_transactions", Err: fmt.Errorf("%d: want at least 1", dl.MaxPeerTx)}
	}
	abuse, err := c.sipAbuseOptions()
	if err != nil {
		return nil, err
	}
	edge, err := c.sipEdgeOptions() // sipedge.go
	if err != nil {
		return nil, err
	}
	abuse = append(abuse, edge...)
	s := &node.SIPConfig{
		UDP: c.SIP.UDP, TCP: c.SIP.TCP, UsersFile: c.SIP.UsersFile,
		MinExpires: c.SIP.MinExpires, DefaultExpires: c.SIP.DefaultExpires, MaxExpires: c.SIP.MaxExpires,
		Limits:       &limits,
		Advertise:    c.SIP.Advertise,
		NATKeepalive: c.SIP.NATKeepalive,
		Options:      append([]sipbridge.Option{sipbridge.WithMaxTransactionsPerPeer(dl.MaxPeerTx)}, abuse...),
	}
	switch {
	case s.NATKeepalive < 0:
		return nil, &node.ConfigError{Field: "sip.nat_keepalive", Err: fmt.Errorf("%v is negative", s.NATKeepalive)}
	case s.NATKeepalive == 0:
		s.NATKeepalive = -1 // sip.nat_keepalive: 0 turns the keep-alives off
	}
	if c.SIP.UsersFile != "" {
		if s.Users, err = node.LoadUsers(c.SIP.UsersFile); err != nil {
			return nil, &node.ConfigError{Field: "sip.users_file", Err: err}
		}
	}
	return s, nil
}

// sipAbuseOptions maps the SIP settings that bound what user agents and other nodes can do
// (trusted networks, digest algorithms, contact and connection caps, deadlines) onto
// bridge options, naming the first invalid setting.
func (c Config) sipAbuseOptions() ([]sipbridge.Option, error) {
	var opts []sipbridge.Option
	if len(c.SIP.TrustedNetworks) > 0 {
		nets, err := sipbridge.ParseTrustedNetworks(c.SIP.TrustedNetworks)
		if err != nil {
			return nil, &node.ConfigError{Field: "sip.trusted_networks", Err: err}
		}
		opts = append(opts, sipbridge.WithTrustedNetworks(nets...))
	}
	if len(c.SIP.DigestAlgorithms) > 0 {
		o := sipbridge.WithDigestAlgorithms(c.SIP.DigestAlgorithms...)
		if err := sipbridge.CheckOption(o); err != nil {
			return nil, &node.ConfigError{Field: "sip.digest_algorithms", Err: err}
		}
		opts = append(opts, o)
	}
	o := sipbridge.WithMaxContacts(c.SIP.MaxContacts)
	if err := sipbridge.CheckOption(o); err != nil {
		return nil, &node.ConfigError{Field: "sip.max_contacts", Err: err}
	}
	opts = append(opts, o)
	l := c.SIP.Limits
	for _, d := range []struct {
		key string
		v   int64
	}{
		{"sip.limits.message_timeout", int64(l.MessageTimeout)}, {"sip.limits.tcp_idle_timeout", int64(l.TCPIdleTimeout)},
		{"sip.limits.stream_idle_timeout", int64(l.StreamIdle)}, {"sip.limits.max_tcp_per_source", int64(l.MaxTCPPerSource)},
		{"sip.limits.max_tcp_connections", int64(l.MaxTCP)}, {"sip.limits.max_streams_per_peer", int64(l.MaxStreamsPeer)},
		{"sip.limits.max_streams", int64(l.MaxStreams)},
	} {
		if d.v < 0 {
			return nil, &node.ConfigError{Field: d.key, Err: fmt.Errorf("%d is negative (0: the default)", d.v)}
		}
	}
	opts = append(opts, sipbridge.WithConnLimits(sipbridge.ConnLimits{
		MessageTimeout: l.MessageTimeout, TCPIdleTimeout: l.TCPIdleTimeout, StreamIdleTimeout: l.StreamIdle,
		MaxTCPPerSource: l.MaxTCPPerSource, MaxTCP: l.MaxTCP, MaxStreamsPerPeer: l.MaxStreamsPeer, MaxStreams: l.MaxStreams,
	}))
	return opts, nil
}
