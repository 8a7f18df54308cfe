// Package election elects the proxies of a hiersip domain (draft §6): the
// nodes that join the global overlay and route SIP between domains, and the
// candidates (the draft's "inactivated proxy list") that watch them and take
// over when they fail or leave.
//
// The package has two layers, in the manner of etcd's raft:
//
//   - Election (core.go) is a pure, deterministic state machine. It starts no
//     goroutines, does no I/O, reads no clock and uses no randomness. Time
//     enters through Tick(now), messages through Step(msg), and what it wants
//     sent leaves through Ready(). Role(), Epoch(), Leader(), Proxies(),
//     Candidates() and Status() tell what it decided.
//   - Runner (runner.go) owns an Election on a libp2p host: it ticks it from
//     a clock (WithClock), carries its messages, measures the node's metrics, follows
//     AutoNAT's reachability, and calls the Duties (join the global overlay,
//     publish records) when the node becomes or stops being a proxy.
//     Duties.Promote receives the Promotion it serves (epoch, proxies,
//     candidates, endorsements), so duties never read the runner back from
//     inside its callback.
//
// # Utility
//
// Every node scores itself with Utility (draft §6.1):
//
//	s(x, half) = x / (x + half)                                  in [0, 1)
//	base       = (0.4·s(online, 1h) + 0.3·s(bandwidth, 10 Mbit/s) + 0.3·s(cpu, 2 cores)) / 1.0
//	score      = base·weight / (1 + base·weight)                 in [0, 1)
//	U          = tier + score      tier: public 2, unknown 1, private (NATed) 0
//
// The weights and half-scales are Weights (DefaultWeights gives the values
// above); weight is the operator's multiplier (default 1). Because the score
// stays below 1, a publicly reachable node always outranks a NATed one,
// whatever its other metrics; an operator who knows better forces the
// reachability (WithReachability). A node with OptOut has utility
// NotEligible and never becomes proxy or candidate. Ties are broken by the
// lower peer ID (Better), so every node ranks the same way.
//
// # Protocol
//
// The roster is an ordered list: its first Config.Proxies members (default
// 1) are the proxies, the first of them the leader; the next
// Config.Candidates (default 2) are the candidates, in succession order.
// The leader also keeps Config.Spares live bidders to refill the list.
//
//   - The leader broadcasts Announce (epoch, roster, spares, bid floor) every
//     HelloInterval (500 ms) and at once when the roster changes.
//   - Every other roster member sends Hello to the leader every
//     HelloInterval; the leader answers HelloAck. A Hello unanswered within
//     HelloTimeout (250 ms) is missed; any message from the leader resets the
//     count. After MissedHellos (3) consecutive misses the member of rank 1
//     (the next proxy, or the best candidate) takes over with epoch+1; the
//     member of rank r waits 2(r-1) more misses, in case rank 1 died too.
//     The leader drops a member not heard from for 3·500+250 ms and promotes
//     the best spare or candidate.
//   - A leader that leaves (Leave, Runner.Close) sends Handoff with epoch+1
//     and the roster without itself to its successor, and broadcasts the same
//     as an Announce: the successor serves within one round trip. A member
//     that leaves sends Hello with Leaving set.
//   - Nodes outside the roster are silent unless their utility exceeds the
//     floor in the Announce, or they are listed as spares; then they send
//     Bid to the leader at most every BidInterval (2 s). The floor is the
//     worst listed member's utility while the lists are full; while they are
//     not, the leader lowers it by a step that starts at 1/4096 and doubles
//     every interval, so that a refill draws a few bids, not one per node.
//   - A node that hears no Announce for ElectionTimeout (2.5 s; also at
//     start) holds an election: eligible nodes broadcast Bid once per
//     HelloInterval unless Proxies+Candidates+Spares better bids are live;
//     after two intervals the best bidder becomes leader with epoch+1.
//
// Utility and epochs settle split brain (see Security, "Who leads"): the
// clearly better leader wins, and between leaders within Margin of each
// other the higher epoch, then the lower peer ID. A leader that hears a
// preferred one steps down and redirects its nodes, so after a partition
// heals exactly one roster, with exactly Config.Proxies proxies, remains.
// Serving proxies are not preempted by nodes that are better only within
// Margin (stability); better nodes displace candidates.
//
// # Timing
//
// With the defaults a crashed proxy is replaced after at most three
// HelloIntervals plus one HelloTimeout: 1.75 s in the worst case (crash just
// after an answered Hello), 1.25–1.75 s in general, plus the runner's tick
// (HelloInterval/10) and the time Duties.Promote takes. When the dead host
// refuses connections, the runner reports each failed Hello at once
// (Election.Unreachable) and the worst case drops to 1.5 s. A late HelloAck (a
// slow or relayed link with a round trip above HelloTimeout) still resets
// the count, so only three Hellos in a row without any answer cause a
// failover. A graceful handoff takes one message.
//
// # Carrier
//
// Announce and election Bids go on the gossipsub topic
// "/hiersip/<domain>/election" (Topic), which the runner joins on the
// *pubsub.PubSub the caller passes in. Gossipsub gives every member of the
// domain the announcement with bounded fan-out per node (mesh degree), signs
// and authenticates the author, deduplicates, and heals with the mesh
// without the election maintaining its own dissemination tree. A topic
// validator drops messages that do not decode or whose From is not the
// signed author. Hello, HelloAck, Bid to the leader and Handoff are
// point-to-point and go on direct streams of HelloProtocol
// (/hiersip/hello/1.0.0), one message per stream, opened with
// network.WithAllowLimitedConn so that a proxy can watch candidates behind
// relays; their From must be the stream's remote peer.
//
// In a settled domain, only the leader broadcasts; a node receives per
// HelloInterval one Announce (peers), one Announce and one HelloAck
// (proxies and candidates), or Proxies+Candidates-1 Hellos plus the spares'
// rare Bids (the leader): O(P+C), independent of the domain's size (see
// BenchmarkElectionMessages: at most 2.5 messages per node per interval for
// 10, 100 and 1,000 nodes; TestTrafficBoundedThroughFailover keeps it at
// most 6 through failovers in 300 nodes). An election from scratch is the
// exception: in its first round every eligible node broadcasts one Bid, so
// each node receives about N messages once. The adaptive floor also assumes
// utilities are spread out; many nodes with identical utility bid together.
//
// # Usage
//
//	ps, _ := pubsub.NewGossipSub(ctx, h)
//	r, err := election.NewRunner(h, ps, "example.org", duties,
//		election.WithLogger(logger), election.WithBandwidth(50e6))
//	if err != nil { ... }
//	if err := r.Start(); err != nil { ... }
//	defer r.Close() // hands the role over, then demotes
//	states, cancel := r.Subscribe()
//	for s := range states { ... s.Role, s.Epoch, s.Proxies, s.Candidates ... }
//
// # Security
//
// Who may send what (see also the README, "Security"):
//
//   - Members only. The runner admits a message only from a peer that is a
//     member of the domain (WithMembership: the node passes "in the domain
//     overlay") and has been connected for at least the minimum member age
//     (WithMinMemberAge, default two Hello intervals), and, in an enrolled
//     domain (WithCertificates), that
//     carries a valid, unrevoked certificate of the domain's authority issued
//     to it. Gossip messages must be signed by their author (gossipsub's
//     StrictSign; the topic validator checks that the author is the From);
//     Hello-protocol streams must come from the From.
//   - Not replayable. Every message carries its sender's sequence number
//     (Message.Seq, microseconds of its clock, increasing); the runner drops
//     a message whose number is not above the last one it took from that
//     sender, and one more than MaxClockSkew ahead of its own clock.
//   - Bounded epochs. Validate refuses epochs above MaxEpoch (2^53); the core
//     saturates there instead of wrapping, and refuses a jump of more than
//     MaxEpochStep over its own epoch from anyone but its own leader.
//   - Observed utility. The core rates itself with Credible: its tier plus
//     0.9·s(online) for its own online time plus 0.1 of the draft's score, so
//     claims (bandwidth, CPU, weight) move it by at most 0.1. The runner
//     cuts every utility a message claims for the sender (and for the
//     announced leader, when it is a direct neighbour: Message.Observed) to
//     Credible of what it observes: the tier to the reachability it sees (a
//     peer reachable only through a relay is private; "public" only for a
//     peer it has dialed directly), the online time to how long the peer has
//     been connected. On gossip the first hop refuses a Bid that claims more
//     than it observes.
//   - Who leads. The core follows a different leader only if (a) its leader
//     hands over (Handoff) or redirects it, (b) it has no leader and is not
//     itself clearly better than the announced one, (c) its leader has been
//     silent for a Hello interval and a Hello timeout and the new leader is
//     in its roster (failover), or (d) the new leader is observed and
//     preferred: clearly better (by more than Margin), or within Margin at a
//     higher epoch, then the lower peer ID. A Handoff naming this node is
//     taken only from its own leader. A leader that hears a rival it is
//     clearly better than takes a higher epoch (if the rival is at most 64
//     ahead); a leader that follows another redirects its nodes. A node
//     without a leader that is clearly better than an announced leader
//     elects itself: that is how a node of a better tier that joins replaces
//     a NATed proxy.
//   - Endorsements. A roster member signs, in every Hello, the (domain,
//     epoch, leader) it follows, and a leaving leader signs its successor in
//     the Handoff; the leader's runner keeps those of its epoch
//     (Runner.Endorsements) for the proxy record's chain of custody
//     (package domains).
//
// What remains: in an open domain any peer can become a member, and a member
// that the others observe as better than the current leader (or within
// Margin of it, at a higher epoch), or one that is there when a domain has
// no leader, becomes leader. An enrolled domain admits only certified nodes.
//
// # Limitations
//
//   - Gossipsub does not open streams over relayed (limited) connections. A
//     NATed node whose only connections are relayed hears no Announce and
//     holds an election on its own; it needs a direct connection (hole
//     punching, DESIGN §5) to one member of the domain.
//   - An election from scratch costs each node about N messages once (see
//     Carrier).
//
// Messages have a compact JSON encoding (Encode, Decode) bounded by
// MaxMessageSize and MaxListed; Decode rejects anything else with an error
// and never panics.
package election
