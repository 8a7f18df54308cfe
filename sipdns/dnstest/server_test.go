package dnstest_test

import (
	"errors"
	"testing"

	"github.com/hiersip/hiersip/sipdns/dnstest"
	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ask(t *testing.T, addr, name string, qtype uint16, network string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: network}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestServer(t *testing.T) {
	s, err := dnstest.Start(
		`example.test. 300 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 45`,
		`sip.example.test. 60 IN A 127.0.0.1`,
		`_sip._udp.deep.example.test. 60 IN SRV 10 0 5060 sip.example.test.`,
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp", "tcp"} {
		if r := ask(t, s.Addr, "SIP.example.test.", dns.TypeA, network); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("%s: A: %v", network, r)
		}
	}
	if r := ask(t, s.Addr, "sip.example.test.", dns.TypeAAAA, "udp"); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("NODATA with SOA: %v", r)
	}
	if r := ask(t, s.Addr, "none.example.test.", dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError {
		t.Errorf("NXDOMAIN: %v", r)
	}
	if r := ask(t, s.Addr, "deep.example.test.", dns.TypeA, "udp"); r.Rcode != dns.RcodeSuccess {
		t.Errorf("an empty non-terminal is not NXDOMAIN: %v", r)
	}
	s.Remove("sip.example.test.", dns.TypeANY)
	if r := ask(t, s.Addr, "sip.example.test.", dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError {
		t.Errorf("removed: %v", r)
	}
	s.Fail(dns.RcodeRefused)
	if r := ask(t, s.Addr, "sip.example.test.", dns.TypeA, "udp"); r.Rcode != dns.RcodeRefused {
		t.Errorf("Fail: %v", r)
	}
	if s.Queries() != 7 {
		t.Errorf("Queries() = %d, want 7", s.Queries())
	}
	if err := s.Add("not a record"); err == nil {
		t.Error("Add accepted a bad record")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, dnstest.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}
