package node

import "github.com/prometheus/client_golang/prometheus"

// The SIP bridge's abuse counters (sipbridge.AbuseStats), read at scrape time.
var (
	descSIPConns = prometheus.NewDesc("hiersip_sip_open_connections",
		"UA-facing SIP/TCP connections (kind=tcp) and inbound /hiersip/sip/1.0.0 streams (kind=stream) open now.",
		[]string{"kind"}, nil)
	descSIPConnsClosed = prometheus.NewDesc("hiersip_sip_connections_closed_total",
		"SIP/TCP connections and inbound streams the bridge closed: refused at once (their source, peer or everyone at a cap) or timed out (idle, or a message not whole in time).",
		[]string{"kind", "reason"}, nil)
	descLogSuppressed = prometheus.NewDesc("hiersip_log_lines_suppressed_total",
		"Log lines the bridge's log guard suppressed (each cause summarised once per window).", nil, nil)
	descCalleeLegsEnded = prometheus.NewDesc("hiersip_sip_callee_legs_ended_total",
		"Calls whose callee leg the node ended itself (CANCEL, or ACK and BYE) after losing the hop towards the caller.", nil, nil)
	descResponsesLost = prometheus.NewDesc("hiersip_sip_responses_lost_total",
		"SIP answers that could not be sent to the node their request came from (no connection or stream to it could be had).", nil, nil)
	descRequestsResent = prometheus.NewDesc("hiersip_sip_requests_resent_total",
		"In-dialog SIP requests sent again to the next node after their link to it failed (each resend counted).", nil, nil)
)

// abuseCollector reports a node's bridge's abuse counters.
type abuseCollector struct{ n *Node }

func (c abuseCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSIPConns, descSIPConnsClosed, descLogSuppressed, descCalleeLegsEnded, descResponsesLost, descRequestsResent} {
		ch <- d
	}
}

func (c abuseCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.n.Bridge()
	if b == nil {
		return
	}
	st := b.Stats()
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	count := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(descSIPConns, float64(st.TCPConns), "tcp")
	gauge(descSIPConns, float64(st.Streams), "stream")
	count(descSIPConnsClosed, st.TCPRefused, "tcp", "refused")
	count(descSIPConnsClosed, st.TCPTimedOut, "tcp", "timed_out")
	count(descSIPConnsClosed, st.StreamsRefused, "stream", "refused")
	count(descSIPConnsClosed, st.StreamsTimedOut, "stream", "timed_out")
	count(descLogSuppressed, st.LogSuppressed)
	count(descCalleeLegsEnded, st.CalleeLegsEnded)
	count(descResponsesLost, st.ResponsesLost)
	count(descRequestsResent, st.RequestsResent)
	for _, r := range []struct {
		reason string
		v      uint64
	}{{"unparsable", st.Unparsable}, {"relay_refused", st.RelayRefused}, {"contacts_refused", st.ContactsRefused},
		{"auth_stale", st.AuthStale}, {"auth_account_throttled", st.AuthAccountThrottled}} {
		count(descSIPRejected, r.v, r.reason)
	}
}
