package daemon

import (
	"strings"
	"testing"
	"time"
)

func TestDaemonConfigMedia(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, `
domain: pastry
sip: {udp: 192.0.2.1:5060}
media:
  ports: 30000-30999
  max_sessions: 50
  max_sessions_per_peer: 5
  idle_timeout: 30s
  max_delay: 60ms
`)
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	nc, err := c.NodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	m := nc.Media
	if m.Disable || m.PortMin != 30000 || m.PortMax != 30999 || m.MaxSessions != 50 || m.MaxSessionsPerPeer != 5 ||
		m.IdleTimeout != 30*time.Second || m.HoldTimeout != time.Hour || m.MaxDelay != 60*time.Millisecond {
		t.Fatalf("media config: %+v", m)
	}
	def := Defaults()
	def.Domain, def.Logger = "pastry", quiet
	nc, err = def.NodeConfig()
	if err != nil || nc.Media.Disable || nc.Media.PortMin != 10000 || nc.Media.PortMax != 20000 {
		t.Fatalf("defaults: %+v %v", nc.Media, err)
	}
	for _, bad := range []struct{ yaml, field string }{
		{"media: {ports: 20000}", "media.ports"},
		{"media: {ports: 9-8}", "media.ports"},
		{"media: {ports: 70000-70010}", "media.ports"},
		{"media: {max_sessions: 0}", "media.max_sessions"},
		{"media: {max_sessions_per_peer: -1}", "media.max_sessions_per_peer"},
		{"media: {idle_timeout: -1s}", "media.idle_timeout"},
		{"media: {max_delay: -1s}", "media.max_delay"},
		{"media: {address: not-an-ip}", "media.address"},
	} {
		c, err := Load(writeFile(t, "domain: pastry\n"+bad.yaml+"\n"), nil)
		if err == nil {
			c.Logger = quiet
			_, err = c.NodeConfig()
		}
		if err == nil || !strings.Contains(err.Error(), "config: "+bad.field+": ") {
			t.Errorf("%s: %v, want an error naming %s", bad.yaml, err, bad.field)
		}
	}
	off, err := Load(writeFile(t, "domain: pastry\nmedia: {enabled: false, ports: nonsense}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	off.Logger = quiet
	if nc, err := off.NodeConfig(); err != nil || !nc.Media.Disable {
		t.Fatalf("media off: %+v %v", nc.Media, err)
	}
}
