package daemon

import (
	"strings"
	"testing"
	"time"
)

func TestDaemonConfigLimits(t *testing.T) {
	clearEnv(t)
	t.Setenv("HIERSIP_SIP_LIMITS_SOURCE_RATE", "5")
	t.Setenv("HIERSIP_SIP_LIMITS_SOURCE_BURST", "7")
	c, err := Load("", daemonFlags(t, "--domain", "pastry", "--sip-limits-peer-rate", "0"))
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	nc, err := c.NodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if l := nc.SIP.Limits; l == nil || l.SourceRate != 5 || l.SourceBurst != 7 || l.PeerRate != 0 || l.AuthFailures != 10 {
		t.Fatalf("limits: %+v", l)
	}
	t.Setenv("HIERSIP_SIP_LIMITS_SOURCE_BURST", "0")
	c, err = Load("", daemonFlags(t, "--domain", "pastry"))
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	if _, err := c.NodeConfig(); err == nil || !strings.Contains(err.Error(), "config: sip.limits: ") {
		t.Fatalf("rate without burst: %v", err)
	}
}

func TestDaemonConfigAbuse(t *testing.T) {
	clearEnv(t)
	t.Setenv("HIERSIP_SIP_TRUSTED_NETWORKS", "192.168.1.0/24, 10.0.0.7")
	t.Setenv("HIERSIP_SIP_LIMITS_STREAM_IDLE_TIMEOUT", "90s")
	c, err := Load("", daemonFlags(t, "--domain", "pastry", "--sip-max-contacts", "4", "--sip-digest-algorithms", "MD5"))
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	if _, err := c.NodeConfig(); err != nil {
		t.Fatal(err)
	}
	if c.SIP.Limits.StreamIdle != 90*time.Second || c.SIP.MaxContacts != 4 || len(c.SIP.TrustedNetworks) != 2 {
		t.Fatalf("settings: %+v", c.SIP)
	}
	for _, bad := range []struct{ env, value, field string }{
		{"HIERSIP_SIP_TRUSTED_NETWORKS", "192.168.1.0/33", "sip.trusted_networks"},
		{"HIERSIP_SIP_DIGEST_ALGORITHMS", "SHA-1", "sip.digest_algorithms"},
		{"HIERSIP_SIP_MAX_CONTACTS", "17", "sip.max_contacts"},
		{"HIERSIP_SIP_LIMITS_MAX_STREAMS", "-1", "sip.limits.max_streams"},
	} {
		clearEnv(t)
		t.Setenv(bad.env, bad.value)
		c, err := Load("", daemonFlags(t, "--domain", "pastry"))
		if err != nil {
			t.Fatal(err)
		}
		c.Logger = quiet
		if _, err := c.NodeConfig(); err == nil || !strings.Contains(err.Error(), "config: "+bad.field+": ") {
			t.Errorf("%s=%s: %v, want an error naming %s", bad.env, bad.value, err, bad.field)
		}
	}
}
