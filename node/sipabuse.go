package node

import (
	"fmt"

	"github.com/hiersip/hiersip/sipbridge"
)

// sipAbuseOptions maps the SIP settings that bound what user agents and other nodes can do
// (trusted networks, digest algorithms, contact and connection caps, deadlines) onto
// bridge options, naming the first invalid setting.
func (c DaemonConfig) sipAbuseOptions() ([]sipbridge.Option, error) {
	var opts []sipbridge.Option
	if len(c.SIP.TrustedNetworks) > 0 {
		nets, err := sipbridge.ParseTrustedNetworks(c.SIP.TrustedNetworks)
		if err != nil {
			return nil, &DaemonConfigError{"sip.trusted_networks", err}
		}
		opts = append(opts, sipbridge.WithTrustedNetworks(nets...))
	}
	if len(c.SIP.DigestAlgorithms) > 0 {
		o := sipbridge.WithDigestAlgorithms(c.SIP.DigestAlgorithms...)
		if err := sipbridge.CheckOption(o); err != nil {
			return nil, &DaemonConfigError{"sip.digest_algorithms", err}
		}
		opts = append(opts, o)
	}
	o := sipbridge.WithMaxContacts(c.SIP.MaxContacts)
	if err := sipbridge.CheckOption(o); err != nil {
		return nil, &DaemonConfigError{"sip.max_contacts", err}
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
			return nil, &DaemonConfigError{d.key, fmt.Errorf("%d is negative (0: the default)", d.v)}
		}
	}
	opts = append(opts, sipbridge.WithConnLimits(sipbridge.ConnLimits{
		MessageTimeout: l.MessageTimeout, TCPIdleTimeout: l.TCPIdleTimeout, StreamIdleTimeout: l.StreamIdle,
		MaxTCPPerSource: l.MaxTCPPerSource, MaxTCP: l.MaxTCP, MaxStreamsPerPeer: l.MaxStreamsPeer, MaxStreams: l.MaxStreams,
	}))
	return opts, nil
}
