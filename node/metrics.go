package node

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hiersip/hiersip/bootstrap"
	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/internal/p2pnet"
)

// Metrics are a node's Prometheus metrics, in a registry of their own (not
// the global one), so that several nodes can run in one process. A Metrics
// belongs to one node: pass a fresh one in Config.Metrics, or let the node
// create it, and serve Registry (NewAdminHandler does, at /metrics).
//
// All methods are safe on a nil *Metrics, which records nothing.
type Metrics struct {
	reg *prometheus.Registry

	registrations   *prometheus.CounterVec
	registerSeconds prometheus.Histogram
	lookups         *prometheus.CounterVec
	lookupSeconds   *prometheus.HistogramVec
	calls           *prometheus.CounterVec
	roleChanges     *prometheus.CounterVec
	failovers       prometheus.Counter
	bootstrap       *prometheus.CounterVec
	refused         *prometheus.CounterVec
}

// NewMetrics returns a node's metrics in a new registry.
func NewMetrics() *Metrics {
	buckets := prometheus.ExponentialBuckets(0.0005, 2, 15) // 0.5 ms … 8 s
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hiersip_registrations_total",
			Help: "Binding records stored in the domain overlay, by operation (register, unregister) and result (ok, error).",
		}, []string{"op", "result"}),
		registerSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hiersip_registration_duration_seconds",
			Help:    "Time to store a binding record in the domain overlay.",
			Buckets: buckets,
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hiersip_lookups_total",
			Help: "Lookups by overlay (domain, global), record (binding, proxy) and result (found, not_found, error).",
		}, []string{"overlay", "record", "result"}),
		lookupSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hiersip_lookup_duration_seconds",
			Help:    "Lookup latency by overlay (domain, global) and record (binding, proxy).",
			Buckets: buckets,
		}, []string{"overlay", "record"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hiersip_sip_calls_routed_total",
			Help: "INVITEs routed by the node's SIP bridge, by kind of route and final status code.",
		}, []string{"kind", "code"}),
		roleChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hiersip_election_role_changes_total",
			Help: "Changes of this node's election role, by the role taken (proxy, candidate, peer).",
		}, []string{"role"}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hiersip_election_failovers_total",
			Help: "Times the domain's leading proxy changed from one node to another.",
		}),
		bootstrap: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hiersip_bootstrap_events_total",
			Help: "Bootstrap events by overlay (domain, global), source (mdns, static, cache, web) and event (found, connected, failed, joined).",
		}, []string{"overlay", "source", "event"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hiersip_refused_total",
			Help: "Records and messages the node refused, by what (binding, proxy, lookup, election) and reason (see README, Security).",
		}, []string{"what", "reason"}),
	}
	m.reg.MustRegister(m.registrations, m.registerSeconds, m.lookups, m.lookupSeconds,
		m.calls, m.roleChanges, m.failovers, m.bootstrap, m.refused)
	return m
}

// refuse counts a record or message the node refused: what is "binding",
// "proxy", "lookup" (a GET_VALUE that had to wait) or "election"; reason as
// domains.RefusalReason and election.WithRefusalHook give it.
func (m *Metrics) refuse(what, reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(what, reason).Inc()
}

// refusedCount returns how many records or messages of what were refused for
// reason (tests and status).
func (m *Metrics) refusedCount(what, reason string) float64 {
	if m == nil {
		return 0
	}
	var out dto.Metric
	if err := m.refused.WithLabelValues(what, reason).Write(&out); err != nil {
		return 0
	}
	return out.GetCounter().GetValue()
}

// Registry returns the registry that holds the metrics, to serve or to add
// collectors to.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return prometheus.NewRegistry()
	}
	return m.reg
}

// callRouted counts an initial INVITE routed by the SIP bridge: kind is
// sipbridge.CallIntraDomain, CallInterDomain or CallInvalid, code the final
// status code sent back. Every node on the path counts the call once.
func (m *Metrics) callRouted(kind string, code int) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(kind, strconv.Itoa(code)).Inc()
}

func (m *Metrics) observeRegistration(op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.registrations.WithLabelValues(op, result).Inc()
	m.registerSeconds.Observe(d.Seconds())
}

func (m *Metrics) observeLookup(overlay, record string, d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "found"
	switch {
	case errors.Is(err, domains.ErrNotFound):
		result = "not_found"
	case err != nil:
		result = "error"
	}
	m.lookups.WithLabelValues(overlay, record, result).Inc()
	m.lookupSeconds.WithLabelValues(overlay, record).Observe(d.Seconds())
}

func (m *Metrics) bootstrapEvent(overlay string, ev bootstrap.Event) {
	if m == nil {
		return
	}
	src := string(ev.Source)
	if src == "" {
		src = "none"
	}
	m.bootstrap.WithLabelValues(overlay, src, ev.Kind.String()).Inc()
}

// electionState counts a role change and a failover between two states.
func (m *Metrics) electionState(prev, cur election.State, first bool) {
	if m == nil {
		return
	}
	if first || prev.Role != cur.Role {
		m.roleChanges.WithLabelValues(cur.Role.String()).Inc()
	}
	if !first && prev.Leader != "" && cur.Leader != "" && prev.Leader != cur.Leader {
		m.failovers.Inc()
	}
}

// bind registers the collector of the node's gauges, read at scrape time.
func (m *Metrics) bind(n *Node) {
	if m == nil {
		return
	}
	if err := m.reg.Register(nodeCollector{n}); err != nil {
		n.log.Warn("metrics: a Metrics serves one node only", "err", err)
	}
	_ = m.reg.Register(abuseCollector{n}) // sipmetrics.go
}

// Metrics returns the node's metrics.
func (n *Node) Metrics() *Metrics { return n.cfg.Metrics }

func overlayLabel(ov *domains.Overlay) string {
	if ov.Name() == domains.GlobalName {
		return overlayGlobal
	}
	return overlayDomain
}

// nodeCollector reports the node's gauges.
type nodeCollector struct{ n *Node }

var (
	descRoutingTable = prometheus.NewDesc("hiersip_routing_table_peers",
		"Peers in the routing table of each overlay the node is in.", []string{"overlay"}, nil)
	descLocalRegs = prometheus.NewDesc("hiersip_local_registrations",
		"Live bindings this node serves for its user agents.", nil, nil)
	descConns = prometheus.NewDesc("hiersip_connections",
		"Open libp2p connections, direct or relayed.", []string{"kind"}, nil)
	descRole = prometheus.NewDesc("hiersip_election_role",
		"1 for the node's current election role.", []string{"role"}, nil)
	descInFlight = prometheus.NewDesc("hiersip_sip_transactions_in_flight",
		"SIP requests the node's bridge is proxying now (final response not yet sent).", nil, nil)
	descEpoch = prometheus.NewDesc("hiersip_election_epoch",
		"The domain's current election epoch as this node knows it.", nil, nil)
	descSIPRejected = prometheus.NewDesc("hiersip_sip_rejected_total",
		"SIP messages the bridge's limits refused, by reason (rate_limited and overloaded: answered 503; dropped: no answer; auth_failed: wrong credentials; auth_throttled: credentials not checked, 503, of which auth_account_throttled for their account; auth_stale: unknown, expired or replayed nonce, 401; unparsable: 400 where possible; relay_refused and contacts_refused: 403).",
		[]string{"reason"}, nil)
)

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRoutingTable, descLocalRegs, descConns, descRole, descEpoch, descInFlight, descSIPRejected} {
		ch <- d
	}
	for _, d := range mediaDescs { // media.go
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	ch <- prometheus.MustNewConstMetric(descRoutingTable, prometheus.GaugeValue,
		float64(n.domain.RoutingTableSize()), overlayDomain)
	if g := n.global.overlay(); g != nil {
		ch <- prometheus.MustNewConstMetric(descRoutingTable, prometheus.GaugeValue,
			float64(g.RoutingTableSize()), overlayGlobal)
	}
	ch <- prometheus.MustNewConstMetric(descLocalRegs, prometheus.GaugeValue, float64(len(n.locator.registrations())))
	var direct, relayed int
	for _, conn := range n.Host().Network().Conns() {
		if p2pnet.Relayed(conn) {
			relayed++
		} else {
			direct++
		}
	}
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(direct), "direct")
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(relayed), "relayed")
	role, epoch := n.role()
	for _, r := range []election.Role{election.RolePeer, election.RoleCandidate, election.RoleProxy} {
		v := 0.0
		if r.String() == role {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, v, r.String())
	}
	ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(epoch))
	if b := n.Bridge(); b != nil {
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(b.InFlight()))
		st := b.Stats()
		for _, r := range []struct {
			reason string
			v      uint64
		}{{"rate_limited", st.RateLimited}, {"overloaded", st.Overloaded}, {"dropped", st.Dropped},
			{"auth_failed", st.AuthFailed}, {"auth_throttled", st.AuthThrottled}} {
			ch <- prometheus.MustNewConstMetric(descSIPRejected, prometheus.CounterValue, float64(r.v), r.reason)
		}
	}
	n.collectMedia(ch)
}
