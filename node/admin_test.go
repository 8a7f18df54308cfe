package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/bootstrap"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/libp2p/go-libp2p/core/network"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, body
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return mf
}

// metricValue returns the value of the counter or gauge name whose labels
// include labels ("k=v" pairs), summed over the matching series.
func metricValue(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f, ok := mf[name]
	if !ok {
		return -1
	}
	var sum float64
outer:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if have[k] != v {
				continue outer
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func TestAdminHandler(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Domain: "adm", ListenAddrs: loopback, Logger: quiet,
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
		Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true}}
	a, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	cfg.Bootstrap.Peers = []string{p2pAddr(t, a.Host())}
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	waitJoined(t, a)
	waitJoined(t, b)

	const token = "0123456789abcdef"
	srvA := httptest.NewServer(mustAdmin(t, a, WithAdminToken(token)))
	defer srvA.Close()
	srvB := httptest.NewServer(mustAdmin(t, b, WithPprof(true)))
	defer srvB.Close()

	bob := mustAOR(t, "sip:bob@x.adm")
	if err := a.Register(ctx, bob, contact("sip:bob@127.0.0.1:5999", time.Hour)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "b finds bob", func() error { _, err := b.Lookup(ctx, bob); return err })
	if _, err := b.Lookup(ctx, mustAOR(t, "sip:nobody@adm")); err == nil {
		t.Fatal("nobody found")
	}

	// /status
	code, body := get(t, srvA.URL+"/status")
	if code != http.StatusOK {
		t.Fatalf("/status: %d %s", code, body)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.PeerID != a.ID().String() || st.Domain != "adm" || !st.Joined || len(st.Addrs) == 0 ||
		len(st.Registrations) != 1 || st.Registrations[0].AOR != bob.String() || len(st.Registrations[0].Contacts) != 1 ||
		len(st.Overlays) == 0 || st.Overlays[0].RoutingTable < 1 {
		t.Fatalf("/status: %s", body)
	}
	found := false
	for _, c := range st.Connections {
		found = found || (c.PeerID == b.ID().String() && !c.Relayed)
	}
	if !found {
		t.Fatalf("/status of a lists no direct connection to b: %s", body)
	}
	if !slices.ContainsFunc(st.Peers, func(p StatusPeer) bool {
		return p.PeerID == b.ID().String() && p.Path == "direct" && p.Direct > 0 && p.Relayed == 0
	}) {
		t.Fatalf("/status of a does not say b is connected directly: %s", body)
	}
	var text strings.Builder
	if err := st.WriteText(&text); err != nil || !strings.Contains(text.String(), "connected     "+b.ID().String()+" direct") ||
		!strings.Contains(text.String(), "registration  sip:bob@x.adm") {
		t.Fatalf("status text (%v):\n%s", err, text.String())
	}

	// The election picks a proxy; role gauges and role changes follow.
	eventually(t, 20*time.Second, "a proxy is elected", func() error {
		for _, base := range []string{srvA.URL, srvB.URL} {
			var s Status
			_, body := get(t, base+"/status")
			if err := json.Unmarshal(body, &s); err != nil {
				return err
			}
			if s.Role == "proxy" && len(s.Proxies) > 0 {
				mf := scrape(t, base)
				if metricValue(mf, "hiersip_election_role_changes_total", "role=proxy") < 1 ||
					metricValue(mf, "hiersip_election_role", "role=proxy") != 1 {
					return fmt.Errorf("proxy %s: role metrics not updated", s.PeerID)
				}
				return nil
			}
		}
		return fmt.Errorf("no proxy yet")
	})

	// /metrics
	mfA, mfB := scrape(t, srvA.URL), scrape(t, srvB.URL)
	for _, c := range []struct {
		mf     map[string]*dto.MetricFamily
		name   string
		labels []string
		min    float64
	}{
		{mfA, "hiersip_registrations_total", []string{"op=register", "result=ok"}, 1},
		{mfA, "hiersip_registration_duration_seconds", nil, 1},
		{mfA, "hiersip_local_registrations", nil, 1},
		{mfA, "hiersip_routing_table_peers", []string{"overlay=domain"}, 1},
		{mfA, "hiersip_connections", []string{"kind=direct"}, 1},
		{mfB, "hiersip_lookups_total", []string{"overlay=domain", "record=binding", "result=found"}, 1},
		{mfB, "hiersip_lookups_total", []string{"overlay=domain", "record=binding", "result=not_found"}, 1},
		{mfB, "hiersip_lookup_duration_seconds", []string{"overlay=domain", "record=binding"}, 2},
		{mfB, "hiersip_bootstrap_events_total", []string{"overlay=domain", "source=static", "event=connected"}, 1},
		{mfB, "hiersip_bootstrap_events_total", []string{"overlay=domain", "event=joined"}, 1},
	} {
		if v := metricValue(c.mf, c.name, c.labels...); v < c.min {
			t.Errorf("%s%v = %v, want ≥ %v", c.name, c.labels, v, c.min)
		}
	}
	a.Metrics().callRouted(sipbridge.CallInterDomain, 404)
	if v := metricValue(scrape(t, srvA.URL), "hiersip_sip_calls_routed_total", "kind=inter-domain", "code=404"); v != 1 {
		t.Errorf("calls routed: %v", v)
	}

	// /bootstrap
	code, body = get(t, srvA.URL+"/bootstrap")
	if code != http.StatusOK || !strings.Contains(string(body), b.ID().String()) {
		t.Fatalf("/bootstrap: %d %s", code, body)
	}
	peers, err := bootstrap.FetchWebStation(ctx, http.DefaultClient, srvA.URL+"/bootstrap", "adm")
	if err != nil || len(peers) == 0 {
		t.Fatalf("/bootstrap as a web station: %v %v", peers, err)
	}

	// POST /disconnect closes the connections to a peer, for the holder of
	// the admin token only.
	post := func(url, auth string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	disc := srvA.URL + "/disconnect?peer=" + b.ID().String()
	if code := post(disc, ""); code != http.StatusUnauthorized {
		t.Fatalf("/disconnect without the token: %d, want 401", code)
	}
	if code := post(disc, "Bearer wrong"); code != http.StatusForbidden {
		t.Fatalf("/disconnect with a wrong token: %d, want 403", code)
	}
	if code := post(srvB.URL+"/disconnect?peer="+a.ID().String(), "Bearer "+token); code != http.StatusForbidden {
		t.Fatalf("/disconnect of a handler without a token: %d, want 403", code)
	}
	if b.Host().Network().Connectedness(a.ID()) != network.Connected {
		t.Fatal("a refused /disconnect closed connections")
	}
	if code := post(srvA.URL+"/disconnect?peer=nonsense", "Bearer "+token); code != http.StatusBadRequest {
		t.Fatalf("/disconnect of a bad peer ID: %d", code)
	}
	if code := post(disc, "Bearer "+token); code != http.StatusOK {
		t.Fatalf("/disconnect: %d", code)
	}
	if code, _ := get(t, srvA.URL+"/disconnect?peer="+b.ID().String()); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /disconnect: %d, want 405", code)
	}

	// pprof only when asked for
	if code, _ := get(t, srvA.URL+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof off: %d", code)
	}
	if code, _ := get(t, srvB.URL+"/debug/pprof/"); code != http.StatusOK {
		t.Errorf("pprof on: %d", code)
	}
}

func TestMetricsNilSafe(t *testing.T) {
	var m *Metrics
	m.callRouted("local", 200)
	m.observeLookup(overlayDomain, "binding", time.Millisecond, nil)
	if m.Registry() == nil {
		t.Fatal("nil registry")
	}
}

// mustAdmin returns the admin handler of n.
func mustAdmin(t testing.TB, n *Node, opts ...AdminOption) http.Handler {
	t.Helper()
	h, err := NewAdminHandler(n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestAdminHandlerRefusesBadOptions: a token short enough to guess, one with
// white space around it, and a nil logger are config errors; no handler is
// made.
func TestAdminHandlerRefusesBadOptions(t *testing.T) {
	n, err := New(context.Background(), Config{Domain: "adm", ListenAddrs: loopback, Logger: quiet,
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true}, Election: ElectionConfig{Disable: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	for name, o := range map[string]AdminOption{
		"short token":  WithAdminToken("0123456789abcde"),
		"spaced token": WithAdminToken(" 0123456789abcdef"),
		"nil logger":   WithAdminLogger(nil),
	} {
		h, err := NewAdminHandler(n, o)
		var ce *ConfigError
		if h != nil || !errors.As(err, &ce) || ce.Field != "admin" {
			t.Errorf("%s: handler %v, error %v; want a *ConfigError of admin", name, h, err)
		}
	}
	if _, err := NewAdminHandler(n, WithAdminToken("0123456789abcdef"), WithAdminLogger(quiet)); err != nil {
		t.Errorf("valid options: %v", err)
	}
}
