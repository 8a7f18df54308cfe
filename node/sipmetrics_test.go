package node

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"
	"time"
)

// TestAbuseMetrics: the bridge's abuse counters reach /metrics.
func TestAbuseMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := New(ctx, Config{Domain: "pastry", ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true}, Election: ElectionConfig{Disable: true},
		SIP: &SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	srv := httptest.NewServer(mustAdmin(t, n))
	defer srv.Close()
	pc, err := net.Dial("udp", n.Bridge().UDPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.Write([]byte("no SIP at all\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", n.Bridge().TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mf := scrape(t, srv.URL)
		unparsable := metricValue(mf, "hiersip_sip_rejected_total", "reason=unparsable")
		tcp := metricValue(mf, "hiersip_sip_open_connections", "kind=tcp")
		if unparsable >= 1 && tcp >= 1 && metricValue(mf, "hiersip_log_lines_suppressed_total") >= 0 &&
			metricValue(mf, "hiersip_sip_connections_closed_total", "kind=stream", "reason=refused") >= 0 &&
			metricValue(mf, "hiersip_sip_callee_legs_ended_total") >= 0 &&
			metricValue(mf, "hiersip_sip_responses_lost_total") >= 0 &&
			metricValue(mf, "hiersip_sip_requests_resent_total") >= 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: unparsable %v, open tcp %v", unparsable, tcp)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
