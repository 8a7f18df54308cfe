package node

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipua"
)

// mediaFlows waits until both UAs of a call received n RTP packets.
func mediaFlows(t *testing.T, n uint64, calls ...*sipua.Call) {
	t.Helper()
	eventually(t, 15*time.Second, "RTP both ways", func() error {
		for _, c := range calls {
			m := c.Media()
			if len(m) == 0 || m[0].Received < n {
				return fmt.Errorf("%s: %+v", c.CallID, m)
			}
		}
		return nil
	})
}

// answered returns the call ua answered.
func answered(t *testing.T, ua *sipua.UA) *sipua.Call {
	t.Helper()
	select {
	case c := <-ua.Incoming():
		return c
	case <-time.After(15 * time.Second):
		t.Fatal("the callee answered no call")
		return nil
	}
}

// checkAnchoredAt checks that the call's media went through the relays of ends only,
// none through others, and that /status and /metrics show it.
func checkAnchoredAt(t *testing.T, ends [2]*Node, others []*Node) {
	t.Helper()
	for i, n := range ends {
		st := n.Media().Stats()
		if st.SessionsOpened != 1 || st.ToPeer == 0 || st.ToPhone == 0 {
			t.Errorf("end node %d: %+v", i, st)
		}
		s := n.Status()
		if len(s.Media) != 1 || s.Media[0].Remote != ends[1-i].ID().String() || s.Media[0].Path != "direct" {
			t.Errorf("end node %d /status media: %+v", i, s.Media)
		}
		srv := httptest.NewServer(mustAdmin(t, n))
		mf := scrape(t, srv.URL)
		srv.Close()
		if v := metricValue(mf, "hiersip_media_packets_total", "direction=to_peer"); v <= 0 {
			t.Errorf("end node %d: hiersip_media_packets_total{direction=to_peer} = %v", i, v)
		}
		if v := metricValue(mf, "hiersip_media_sessions"); v != 1 {
			t.Errorf("end node %d: hiersip_media_sessions = %v", i, v)
		}
	}
	for _, n := range others {
		if st := n.Media().Stats(); st.SessionsOpened != 0 || st.ToPeer != 0 || st.ToPhone != 0 {
			t.Errorf("node %s (proxy %v) relayed media: %+v", n.ID().ShortString(), n.IsProxy(), st)
		}
	}
}

// TestMediaEndToEnd: the media of a call between phones of two nodes of one domain, and
// of a call between two domains through their proxies, is anchored at the caller's and
// the callee's nodes only: the proxies and the other nodes carry none of it.
func TestMediaEndToEnd(t *testing.T) {
	ds := startCallDomains(t, nil, 3, "pastry", "can")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var members []*Node
	for _, n := range ds["pastry"] {
		if !n.IsProxy() {
			members = append(members, n)
		}
	}
	if len(members) < 2 {
		t.Fatalf("pastry has %d non-proxy nodes", len(members))
	}
	t.Run("WithinDomain", func(t *testing.T) {
		a, b := members[0], members[1]
		alice := newUA(t, "sip:alice@pastry", a)
		bob := newUA(t, "sip:bob@pastry", b)
		out := call(t, alice, "sip:bob@pastry")
		in := answered(t, bob)
		mediaFlows(t, 25, out, in)
		var others []*Node
		for _, d := range ds {
			for _, n := range d {
				if n != a && n != b {
					others = append(others, n)
				}
			}
		}
		checkAnchoredAt(t, [2]*Node{a, b}, others)
		if err := out.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*Node{a, b} {
			eventually(t, 10*time.Second, "sessions closed after BYE", func() error {
				if s := n.Media().Stats().Sessions; s != 0 {
					return fmt.Errorf("%d sessions", s)
				}
				return nil
			})
		}
	})
	t.Run("AcrossDomains", func(t *testing.T) {
		a, b := member(ds["pastry"]), member(ds["can"])
		before := map[*Node]uint64{}
		for _, d := range ds {
			for _, n := range d {
				before[n] = n.Media().Stats().SessionsOpened
			}
		}
		carol := newUA(t, "sip:carol@x.pastry", a)
		dave := newUA(t, "sip:dave@x.can", b)
		out := call(t, carol, "sip:dave@x.can")
		in := answered(t, dave)
		mediaFlows(t, 25, out, in)
		for _, d := range ds {
			for _, n := range d {
				opened := n.Media().Stats().SessionsOpened - before[n]
				switch {
				case (n == a || n == b) && opened != 1:
					t.Errorf("end node %s opened %d sessions", n.ID().ShortString(), opened)
				case n != a && n != b && opened != 0:
					t.Errorf("node %s (proxy %v) opened %d sessions for a call it only routes", n.ID().ShortString(), n.IsProxy(), opened)
				}
			}
		}
		for _, p := range []*Node{proxyOf(t, ds["pastry"]), proxyOf(t, ds["can"])} {
			if st := p.Media().Stats(); st.ToPeer != 0 || st.ToPhone != 0 {
				t.Errorf("proxy %s relayed media: %+v", p.ID().ShortString(), st)
			}
		}
		if err := in.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*Node{a, b} {
			eventually(t, 10*time.Second, "sessions closed after BYE", func() error {
				if s := n.Media().Stats().Sessions; s != 0 {
					return fmt.Errorf("%d sessions", s)
				}
				return nil
			})
		}
	})
}

// TestMediaDisabled: a node with media off runs no relay and speaks no media protocol.
func TestMediaDisabled(t *testing.T) {
	ctx := t.Context()
	for _, off := range []bool{false, true} {
		n, err := New(ctx, Config{Domain: "pastry", ListenAddrs: loopback, Logger: quiet,
			Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true}, Election: ElectionConfig{Disable: true},
			SIP: &SIPConfig{UDP: "127.0.0.1:0"}, Media: MediaConfig{Disable: off}})
		if err != nil {
			t.Fatal(err)
		}
		hasProto := false
		for _, p := range n.Host().Mux().Protocols() {
			hasProto = hasProto || p == "/hiersip/media/1.0.0"
		}
		if (n.Media() == nil) != off || hasProto == off {
			t.Errorf("media disabled %v: relay %v, protocol %v", off, n.Media() != nil, hasProto)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		if hasProto := func() bool {
			for _, p := range n.Host().Mux().Protocols() {
				if p == "/hiersip/media/1.0.0" {
					return true
				}
			}
			return false
		}(); hasProto {
			t.Error("the media protocol is still served after Close")
		}
	}
}
