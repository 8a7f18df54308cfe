package node

import (
	"fmt"

	"github.com/hiersip/hiersip/election"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ElectionConfig configures the node's part in its domain's proxy election
// (draft §6).
type ElectionConfig struct {
	// Disable keeps the node out of the election entirely: it never
	// becomes proxy and learns its proxies from the domain overlay only.
	Disable bool
	// OptOut: the node takes part but is never proxy or candidate.
	OptOut bool
	// Weight is the operator's multiplier of the node's utility (default 1).
	Weight float64
	// Bandwidth is the node's bandwidth in bit/s for its utility (0: unknown).
	Bandwidth float64
	// Reachability forces "public" or "private" for the election; empty
	// follows NAT.ForceReachability on a host New created (the daemon sets
	// only that one: nat.reachability), else AutoNAT. It is for NewWithHost,
	// whose host has a NAT configuration of its own.
	Reachability string
	// Config holds the election's protocol parameters (zero: defaults).
	Config election.Config
	// Options are passed to election.NewRunner after the ones above.
	Options []election.Option
}

// validate checks c, naming the setting at fault.
func (c ElectionConfig) validate() error {
	switch {
	case c.Weight < 0:
		return &ConfigError{"election.weight", fmt.Errorf("%v is negative", c.Weight)}
	case c.Bandwidth < 0:
		return &ConfigError{"election.bandwidth", fmt.Errorf("%v is negative", c.Bandwidth)}
	}
	if err := checkReachability("election.reachability", c.Reachability); err != nil {
		return err
	}
	if err := c.Config.Validate(); err != nil {
		return &ConfigError{"election", err}
	}
	return nil
}

// checkReachability checks a forced reachability: "public", "private" or
// empty.
func checkReachability(field, r string) error {
	switch r {
	case "", "public", "private":
		return nil
	}
	return &ConfigError{field, fmt.Errorf("%q: want public, private or empty", r)}
}

// electionReachability is the reachability the election is forced to:
// Election.Reachability, else the host's forced reachability (only for a
// host New created: NewWithHost's host has its own NAT configuration).
func (c Config) electionReachability(own bool) string {
	if c.Election.Reachability != "" || !own {
		return c.Election.Reachability
	}
	return c.NAT.reachability()
}

// electionOptions returns the runner's options of a validated config.
func (n *Node) electionOptions() []election.Option {
	c := n.cfg.Election
	opts := []election.Option{election.WithConfig(c.Config), election.WithLogger(n.nodeLog), election.WithClock(n.cfg.Clock),
		// Members only: peers of the domain overlay (README, "The proxy election").
		election.WithMembership(n.isMember),
		election.WithRefusalHook(func(reason string) { n.cfg.Metrics.refuse("election", reason) })}
	if n.enroll != nil {
		// Certified nodes only; a node without a valid certificate of its
		// own never becomes proxy or candidate.
		opts = append(opts, election.WithCertificates(n.enroll.memberCert(), n.enroll.verifyMember))
	}
	if c.OptOut {
		opts = append(opts, election.WithOptOut())
	}
	if c.Weight > 0 {
		opts = append(opts, election.WithWeight(c.Weight))
	}
	if c.Bandwidth > 0 {
		opts = append(opts, election.WithBandwidth(c.Bandwidth))
	}
	switch n.cfg.electionReachability(n.ownHost) {
	case "public":
		opts = append(opts, election.WithReachability(election.ReachabilityPublic))
	case "private":
		opts = append(opts, election.WithReachability(election.ReachabilityPrivate))
	}
	return append(opts, c.Options...)
}

// startElection starts the node's election runner on ps, with the node's
// proxy duties.
func (n *Node) startElection(ps *pubsub.PubSub) error {
	r, err := election.NewRunner(n.h, ps, n.cfg.Domain, n.duties, n.electionOptions()...)
	if err != nil {
		return &ConfigError{"election", err}
	}
	n.duties.endorser = r // before it starts: the duties read it only once promoted
	if err := r.Start(); err != nil {
		return err
	}
	n.election = r
	n.watchElection(r)
	return nil
}

// Election returns the node's election runner, nil when disabled.
func (n *Node) Election() *election.Runner { return n.election }

// electedProxies returns the proxies of the node's domain as its election
// announced them (the router's first choice); nil without an election.
func (n *Node) electedProxies() []peer.ID {
	if n.election == nil {
		return nil
	}
	var out []peer.ID
	for _, m := range n.election.State().Proxies {
		out = append(out, m.ID)
	}
	return out
}

// watchElection counts role changes and failovers from r's state changes.
func (n *Node) watchElection(r *election.Runner) {
	if n.cfg.Metrics == nil {
		return
	}
	ch, cancel := r.Subscribe()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer cancel()
		var prev election.State
		first := true
		for {
			select {
			case s, ok := <-ch:
				if !ok {
					return
				}
				n.cfg.Metrics.electionState(prev, s, first)
				prev, first = s, false
			case <-n.ctx.Done():
				return
			}
		}
	}()
}

// role returns the node's election role and epoch; without an election
// runner the role follows IsProxy.
func (n *Node) role() (string, uint64) {
	if r := n.election; r != nil {
		s := r.State()
		return s.Role.String(), s.Epoch
	}
	if n.IsProxy() {
		return election.RoleProxy.String(), 0
	}
	return election.RolePeer.String(), 0
}
