package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hiersip/hiersip/media"
	"github.com/hiersip/hiersip/sipbridge"
)

// MediaConfig configures the node's media relay (package media), which anchors the media
// of calls between the node's phones and phones of other nodes: the phone sends RTP to a
// port of its node, and the two end nodes carry it over libp2p. It runs with the SIP
// bridge, on by default.
type MediaConfig struct {
	// Disable turns the relay off: SDP passes untouched and phones must reach each other.
	Disable bool
	// PortMin and PortMax are the UDP port range of the phone-facing sockets, two ports per
	// stream (defaults media.DefaultPortMin, media.DefaultPortMax).
	PortMin, PortMax int
	// MaxSessions bounds the streams the node anchors; MaxSessionsPerPeer those another
	// node's offers open (defaults media.DefaultMaxSessions, DefaultMaxSessionsPerPeer).
	// A call beyond them is answered 503.
	MaxSessions, MaxSessionsPerPeer int
	// IdleTimeout closes a stream that carried no packet for so long; HoldTimeout is the
	// same for streams on hold (defaults media.DefaultIdleTimeout, DefaultHoldTimeout).
	IdleTimeout, HoldTimeout time.Duration
	// MaxDelay bounds the time an RTP packet waits in the queue to the other node; older
	// ones are dropped (default media.DefaultMaxDelay).
	MaxDelay time.Duration
	// Address is the IP the phone-facing sockets bind to and that phones are given (empty:
	// the IP of the SIP UDP listener; when that is a wildcard or a name, every address, and
	// each phone is given the local address towards it).
	Address string
	// Options are passed to media.New after the ones above.
	Options []media.Option
}

// options validates c and returns the relay's options; sipHost is the SIP listener's IP.
func (c MediaConfig) options(sipHost string) ([]media.Option, error) {
	var opts []media.Option
	lo, hi := c.PortMin, c.PortMax
	if lo == 0 && hi == 0 {
		lo, hi = media.DefaultPortMin, media.DefaultPortMax
	}
	if lo < 1 || hi > 65535 || hi < lo+1 {
		return nil, &ConfigError{"media.ports", fmt.Errorf("%d-%d: want a range of at least two ports within 1-65535", lo, hi)}
	}
	opts = append(opts, media.WithPorts(lo, hi))
	for _, v := range []struct {
		field string
		n     int
		opt   func(int) media.Option
	}{{"media.max_sessions", c.MaxSessions, media.WithMaxSessions}, {"media.max_sessions_per_peer", c.MaxSessionsPerPeer, media.WithMaxSessionsPerPeer}} {
		if v.n < 0 {
			return nil, &ConfigError{v.field, fmt.Errorf("%d is negative", v.n)}
		}
		if v.n > 0 {
			opts = append(opts, v.opt(v.n))
		}
	}
	idle, hold := c.IdleTimeout, c.HoldTimeout
	for _, v := range []struct {
		field string
		d     *time.Duration
		def   time.Duration
	}{{"media.idle_timeout", &idle, media.DefaultIdleTimeout}, {"media.hold_timeout", &hold, media.DefaultHoldTimeout}} {
		if *v.d < 0 {
			return nil, &ConfigError{v.field, fmt.Errorf("%v is negative", *v.d)}
		}
		if *v.d == 0 {
			*v.d = v.def
		}
	}
	opts = append(opts, media.WithTimeouts(idle, hold))
	switch {
	case c.MaxDelay < 0:
		return nil, &ConfigError{"media.max_delay", fmt.Errorf("%v is negative", c.MaxDelay)}
	case c.MaxDelay > 0:
		opts = append(opts, media.WithMaxDelay(c.MaxDelay))
	}
	if c.Address != "" {
		ip, err := netip.ParseAddr(strings.Trim(c.Address, "[]"))
		if err != nil {
			return nil, &ConfigError{"media.address", fmt.Errorf("%q is not an IP address", c.Address)}
		}
		opts = append(opts, media.WithAddress(ip))
	} else if ip, err := netip.ParseAddr(strings.Trim(sipHost, "[]")); err == nil {
		opts = append(opts, media.WithAddress(ip))
	} // a host name or none: every address, each phone given the local one towards it
	return append(opts, c.Options...), nil
}

// startMedia creates the media relay of the node's SIP bridge and returns the bridge's
// option, or none when media is off.
func (n *Node) startMedia(udp, tcp string) ([]sipbridge.Option, error) {
	if n.cfg.Media.Disable {
		return nil, nil
	}
	opts, err := n.cfg.Media.options(sipHost(udp, tcp))
	if err != nil {
		return nil, err
	}
	r, err := media.New(n.h, append([]media.Option{media.WithLogger(n.log), media.WithClock(n.cfg.Clock)}, opts...)...)
	if err != nil {
		return nil, &ConfigError{"media", err}
	}
	n.media = r
	return []sipbridge.Option{sipbridge.WithMedia(r)}, nil
}

// sipHost returns the IP (or name) of the SIP listener the media sockets
// follow: the UDP one's, else the TCP one's.
func sipHost(udp, tcp string) string {
	hostport := udp
	if hostport == "" {
		hostport = tcp
	}
	host, _, _ := net.SplitHostPort(hostport)
	return host
}

// stopMedia closes the relay (after the bridge).
func (n *Node) stopMedia() error {
	if n.media == nil {
		return nil
	}
	err := n.media.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Media returns the node's media relay, nil when it runs none.
func (n *Node) Media() *media.Relay { return n.media }

// StatusMedia is one anchored media stream in /status.
type StatusMedia struct {
	CallID   string `json:"call_id"`
	Index    int    `json:"m_line"`
	RTPPort  int    `json:"rtp_port"`
	RTCPPort int    `json:"rtcp_port"`
	// Remote is the call's other end node; Path how the media reaches it: "direct",
	// "relayed" or "none" (nothing sent yet).
	Remote string `json:"remote"`
	Path   string `json:"path"`
	// Phone is the address the node sends the phone's media to ("" until known).
	Phone string `json:"phone"`
	Hold  bool   `json:"hold"`
	// ToPeer counts the phone's packets sent to the other node, ToPhone the other node's
	// packets sent to the phone.
	ToPeer  uint64    `json:"to_peer_packets"`
	ToPhone uint64    `json:"to_phone_packets"`
	Opened  time.Time `json:"opened"`
	Last    time.Time `json:"last_packet"`
}

func (n *Node) mediaStatus() []StatusMedia {
	out := []StatusMedia{}
	if n.media == nil {
		return out
	}
	for _, s := range n.media.Sessions() {
		out = append(out, StatusMedia{CallID: s.CallID, Index: s.Index, RTPPort: s.RTPPort, RTCPPort: s.RTCPPort,
			Remote: s.Remote, Path: s.Path, Phone: s.Phone, Hold: s.Hold, ToPeer: s.ToPeer, ToPhone: s.ToPhone,
			Opened: s.Opened, Last: s.Last})
	}
	return out
}

var (
	descMediaSessions = prometheus.NewDesc("hiersip_media_sessions",
		"Media streams (m-lines of calls) the node anchors now.", nil, nil)
	descMediaSessionsTotal = prometheus.NewDesc("hiersip_media_sessions_total",
		"Media streams by event: opened, refused (limits or ports: the call got 503), idle (closed by the idle or hold timeout).",
		[]string{"event"}, nil)
	descMediaPackets = prometheus.NewDesc("hiersip_media_packets_total",
		"RTP/RTCP packets relayed, by direction: to_peer (from the node's phone to the other end node), to_phone.",
		[]string{"direction"}, nil)
	descMediaBytes = prometheus.NewDesc("hiersip_media_bytes_total",
		"Payload bytes relayed, by direction (to_peer, to_phone).", []string{"direction"}, nil)
	descMediaDropped = prometheus.NewDesc("hiersip_media_dropped_total",
		"Media packets dropped, by reason (stranger, no_remote, not_latched, queue_full, stale, link_down, unknown_session, wrong_peer, oversize, send_failed, bad_frame).",
		[]string{"reason"}, nil)
	descMediaStreams = prometheus.NewDesc("hiersip_media_streams_total",
		"Media streams to other nodes by event: reopened (after a cut), migrated (relayed to direct).", []string{"event"}, nil)
	descMediaDelay = prometheus.NewDesc("hiersip_media_forward_delay_seconds",
		"Time a packet spends in the node from the phone's socket to the other node's stream (queue and write): the latency the node adds.",
		nil, nil)
)

var mediaDescs = []*prometheus.Desc{descMediaSessions, descMediaSessionsTotal, descMediaPackets, descMediaBytes,
	descMediaDropped, descMediaStreams, descMediaDelay}

// collectMedia reports the relay's metrics.
func (n *Node) collectMedia(ch chan<- prometheus.Metric) {
	if n.media == nil {
		return
	}
	st := n.media.Stats()
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	ch <- prometheus.MustNewConstMetric(descMediaSessions, gauge, float64(st.Sessions))
	ch <- prometheus.MustNewConstMetric(descMediaSessionsTotal, counter, float64(st.SessionsOpened), "opened")
	ch <- prometheus.MustNewConstMetric(descMediaSessionsTotal, counter, float64(st.SessionsRefused), "refused")
	ch <- prometheus.MustNewConstMetric(descMediaSessionsTotal, counter, float64(st.SessionsIdle), "idle")
	ch <- prometheus.MustNewConstMetric(descMediaPackets, counter, float64(st.ToPeer), "to_peer")
	ch <- prometheus.MustNewConstMetric(descMediaPackets, counter, float64(st.ToPhone), "to_phone")
	ch <- prometheus.MustNewConstMetric(descMediaBytes, counter, float64(st.ToPeerBytes), "to_peer")
	ch <- prometheus.MustNewConstMetric(descMediaBytes, counter, float64(st.ToPhoneBytes), "to_phone")
	for _, r := range media.DropReasons {
		ch <- prometheus.MustNewConstMetric(descMediaDropped, counter, float64(st.Dropped[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(descMediaStreams, counter, float64(st.Reopens), "reopened")
	ch <- prometheus.MustNewConstMetric(descMediaStreams, counter, float64(st.Migrations), "migrated")
	buckets := make(map[float64]uint64, len(st.Delay.Bounds))
	for i, b := range st.Delay.Bounds {
		buckets[b] = st.Delay.Counts[i]
	}
	ch <- prometheus.MustNewConstHistogram(descMediaDelay, st.Delay.Count, st.Delay.Sum, buckets)
}
