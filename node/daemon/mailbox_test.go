package daemon

import (
	"errors"
	"testing"
	"time"

	"github.com/hiersip/hiersip/mailbox"
	"github.com/hiersip/hiersip/node"
)

// TestDaemonConfigMailbox: mailbox.retention and mailbox.enabled reach the node's
// MailboxConfig; a retention out of range is a config error naming the key.
func TestDaemonConfigMailbox(t *testing.T) {
	c := Defaults()
	c.Domain = "pastry"
	nc, err := c.NodeConfig()
	if err != nil || nc.Mailbox.Disable || nc.Mailbox.Retention != mailbox.DefaultRetention {
		t.Fatalf("defaults: %+v %v", nc.Mailbox, err)
	}
	c.Mailbox.Retention = 48 * time.Hour
	if nc, err = c.NodeConfig(); err != nil || nc.Mailbox.Retention != 48*time.Hour {
		t.Fatalf("retention 48h: %+v %v", nc.Mailbox, err)
	}
	c.Mailbox.Enabled = false
	if nc, err = c.NodeConfig(); err != nil || !nc.Mailbox.Disable {
		t.Fatalf("disabled: %+v %v", nc.Mailbox, err)
	}
	c = Defaults()
	c.Domain = "pastry"
	c.Push.GatewayURL = "http://push.example.com/wake"
	var ce *node.ConfigError
	if _, err := c.NodeConfig(); !errors.As(err, &ce) || ce.Field != "push.gateway_url" {
		t.Errorf("plain http gateway off loopback: %v, want a ConfigError for push.gateway_url", err)
	}
	c.Push.GatewayURL = "https://push.example.com/wake"
	if nc, err := c.NodeConfig(); err != nil || nc.Push.GatewayURL != c.Push.GatewayURL {
		t.Errorf("https gateway: %+v %v", nc.Push, err)
	}
	for _, d := range []time.Duration{-time.Second, 31 * 24 * time.Hour} {
		c := Defaults()
		c.Domain = "pastry"
		c.Mailbox.Retention = d
		_, err := c.NodeConfig()
		var ce *node.ConfigError
		if !errors.As(err, &ce) || ce.Field != "mailbox.retention" {
			t.Errorf("retention %v: %v, want a ConfigError for mailbox.retention", d, err)
		}
	}
}
