package node

import (
	"fmt"

	"github.com/hiersip/hiersip/push"
	"github.com/hiersip/hiersip/sipbridge"
)

// PushConfig configures the waking of sleeping phones (RFC 8599, issue 19): a
// device that registers with push parameters (pn-provider, pn-prid, …) is
// woken through the node's push gateway before a call or message is forked
// to it, and the request waits for it to register again, within Timer C.
type PushConfig struct {
	// GatewayURL is the push gateway's URL (https, or http to a loopback
	// address), which holds the credentials of the push services and takes
	// the body of push.Body. Empty: devices are not woken (a device with push
	// parameters is called like any other). Daemon key: push.gateway_url.
	GatewayURL string
}

func (c PushConfig) validate() error {
	if c.GatewayURL == "" {
		return nil
	}
	if _, err := push.NewClient(c.GatewayURL); err != nil {
		return &ConfigError{"push.gateway_url", err}
	}
	return nil
}

// startPush creates the node's push client and waiter and returns the bridge
// option that uses them (none without a gateway).
func (n *Node) startPush() ([]sipbridge.Option, error) {
	if n.cfg.Push.GatewayURL == "" {
		return nil, nil
	}
	c, err := push.NewClient(n.cfg.Push.GatewayURL, push.WithClock(n.cfg.Clock), push.WithLogger(n.log))
	if err != nil {
		return nil, fmt.Errorf("node: push: %w", err)
	}
	w, err := push.NewWaiter(c, 0)
	if err != nil {
		return nil, fmt.Errorf("node: push: %w", err)
	}
	n.push = w
	return []sipbridge.Option{sipbridge.WithPush(w)}, nil
}
