package node

import (
	"strings"
	"testing"
)

func TestDaemonConfigLimits(t *testing.T) {
	clearEnv(t)
	t.Setenv("HIERSIP_SIP_LIMITS_SOURCE_RATE", "5")
	t.Setenv("HIERSIP_SIP_LIMITS_SOURCE_BURST", "7")
	c, err := LoadDaemonConfig("", daemonFlags(t, "--domain", "pastry", "--sip-limits-peer-rate", "0"))
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
	c, err = LoadDaemonConfig("", daemonFlags(t, "--domain", "pastry"))
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	if _, err := c.NodeConfig(); err == nil || !strings.Contains(err.Error(), "config: sip.limits: ") {
		t.Fatalf("rate without burst: %v", err)
	}
}
