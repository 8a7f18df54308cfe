package node

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hiersip/hiersip/election"
	"github.com/hiersip/hiersip/internal/p2pnet"
)

// Status is a snapshot of a node for people and monitoring: what the admin
// endpoint serves at /status as JSON.
type Status struct {
	PeerID string   `json:"peer_id"`
	Domain string   `json:"domain"`
	Addrs  []string `json:"addrs"`
	// Joined: the domain overlay has a peer. Ready: the node routes calls
	// between users of its domain (a lone node is ready without having
	// joined); ReadyGlobal: to other domains too (Node.WaitReady).
	Joined      bool `json:"joined"`
	Ready       bool `json:"ready"`
	ReadyGlobal bool `json:"ready_global"`
	IsProxy     bool `json:"is_proxy"`
	// Role is "proxy", "candidate" or "peer" (election.Role).
	Role       string         `json:"role"`
	Epoch      uint64         `json:"epoch"`
	Leader     string         `json:"leader,omitempty"`
	Proxies    []StatusMember `json:"proxies"`
	Candidates []StatusMember `json:"candidates"`
	// Overlays are the routing-table sizes of the overlays the node is in
	// ("domain", and "global" while it is a proxy or a global seed).
	Overlays      []StatusOverlay      `json:"overlays"`
	Registrations []StatusRegistration `json:"registrations"`
	SIP           *StatusSIP           `json:"sip,omitempty"`
	// Peers are the connected peers, each with its path: "direct",
	// "relayed" or "direct+relayed" (PeerPath); Connections are the
	// connections one by one.
	Peers       []StatusPeer `json:"peers"`
	Connections []StatusConn `json:"connections"`
	// Calls are the calls the node is in (sipbridge.Bridge.Calls), oldest first.
	Calls []StatusCall `json:"calls"`
	// Media lists the media streams the node anchors (media.go).
	Media []StatusMedia `json:"media"`
	Time  time.Time     `json:"time"`
}

// StatusPeer is a connected peer and how the node is connected to it.
type StatusPeer struct {
	PeerID  string `json:"peer_id"`
	Path    string `json:"path"`
	Direct  int    `json:"direct"`
	Relayed int    `json:"relayed"`
}

// StatusCall is a call the node is in: an INVITE dialog it relays.
type StatusCall struct {
	CallID string `json:"call_id"`
	From   string `json:"from"`
	To     string `json:"to"`
	// State is "early" (ringing) or "confirmed" (answered).
	State string `json:"state"`
	// Direction is "out" (from a phone of the node), "in" (to one), "local" (between two
	// of its phones) or "through" (the node proxies it between two other nodes).
	Direction string    `json:"direction"`
	Started   time.Time `json:"started"`
	Confirmed time.Time `json:"confirmed,omitzero"`
	// Upstream is where the INVITE came from (a peer ID, "phone <address>", "server
	// <address>"); Downstream where the node sent it (peer IDs, "phone <contact>", "server
	// <URI>").
	Upstream   string   `json:"upstream"`
	Downstream []string `json:"downstream"`
	// Media: the node anchors the call's media.
	Media bool `json:"media"`
}

// StatusMember is a proxy or candidate of the domain.
type StatusMember struct {
	PeerID  string  `json:"peer_id"`
	Utility float64 `json:"utility"`
}

// StatusOverlay is one overlay the node is a member of.
type StatusOverlay struct {
	Name         string `json:"name"`
	RoutingTable int    `json:"routing_table"`
}

// StatusRegistration is a binding the node serves.
type StatusRegistration struct {
	AOR      string          `json:"aor"`
	Expires  time.Time       `json:"expires"`
	Contacts []StatusContact `json:"contacts"`
}

// StatusContact is one UA contact of a registration.
type StatusContact struct {
	URI     string    `json:"uri"`
	Expires time.Time `json:"expires"`
}

// StatusSIP are the UA-facing SIP listen addresses.
type StatusSIP struct {
	UDP string `json:"udp,omitempty"`
	TCP string `json:"tcp,omitempty"`
	TLS string `json:"tls,omitempty"`
	WS  string `json:"ws,omitempty"`
	WSS string `json:"wss,omitempty"`
}

// StatusConn is a libp2p connection.
type StatusConn struct {
	PeerID    string    `json:"peer_id"`
	Addr      string    `json:"addr"`
	Direction string    `json:"direction"`
	Relayed   bool      `json:"relayed"`
	Opened    time.Time `json:"opened"`
}

// Status returns a snapshot of the node.
func (n *Node) Status() Status {
	s := Status{
		PeerID: n.ID().String(), Domain: n.Domain(),
		Joined: n.domain.Joined(), IsProxy: n.IsProxy(),
		Ready: isClosed(n.ready.domain), ReadyGlobal: isClosed(n.ready.global),
		Proxies: []StatusMember{}, Candidates: []StatusMember{},
		Registrations: []StatusRegistration{}, Peers: []StatusPeer{}, Connections: []StatusConn{}, Calls: []StatusCall{},
		Time: n.cfg.Clock.Now(),
	}
	for _, a := range n.h.Addrs() {
		s.Addrs = append(s.Addrs, a.String())
	}
	s.Role, s.Epoch = n.role()
	if r := n.Election(); r != nil {
		st := r.State()
		if st.Leader != "" {
			s.Leader = st.Leader.String()
		}
		s.Proxies = members(st.Proxies)
		s.Candidates = members(st.Candidates)
	}
	s.Overlays = []StatusOverlay{{overlayDomain, n.domain.RoutingTableSize()}}
	if g := n.global.overlay(); g != nil {
		s.Overlays = append(s.Overlays, StatusOverlay{overlayGlobal, g.RoutingTableSize()})
	}
	for _, b := range n.locator.registrations() {
		r := StatusRegistration{AOR: b.AOR, Expires: b.Expires, Contacts: []StatusContact{}}
		for _, c := range b.Contacts {
			r.Contacts = append(r.Contacts, StatusContact{URI: c.URI, Expires: c.Expires})
		}
		s.Registrations = append(s.Registrations, r)
	}
	slices.SortFunc(s.Registrations, func(a, b StatusRegistration) int { return strings.Compare(a.AOR, b.AOR) })
	if b := n.Bridge(); b != nil {
		s.SIP = &StatusSIP{UDP: b.UDPAddr(), TCP: b.TCPAddr(), TLS: b.TLSAddr(), WS: b.WSAddr(), WSS: b.WSSAddr()}
		for _, c := range b.Calls() {
			s.Calls = append(s.Calls, StatusCall{CallID: c.CallID, From: c.From, To: c.To, State: c.State,
				Direction: c.Direction, Started: c.Started, Confirmed: c.Confirmed, Upstream: c.Upstream,
				Downstream: append([]string{}, c.Downstream...), Media: c.Media})
		}
	}
	for _, c := range n.h.Network().Conns() {
		s.Connections = append(s.Connections, StatusConn{
			PeerID: c.RemotePeer().String(), Addr: c.RemoteMultiaddr().String(),
			Direction: strings.ToLower(c.Stat().Direction.String()), Relayed: p2pnet.Relayed(c),
			Opened: c.Stat().Opened,
		})
	}
	slices.SortFunc(s.Connections, func(a, b StatusConn) int {
		if c := strings.Compare(a.PeerID, b.PeerID); c != 0 {
			return c
		}
		return a.Opened.Compare(b.Opened)
	})
	for _, p := range n.h.Network().Peers() {
		pp := n.pathTo(p)
		s.Peers = append(s.Peers, StatusPeer{PeerID: p.String(), Path: pp.String(), Direct: pp.Direct, Relayed: pp.Relayed})
	}
	slices.SortFunc(s.Peers, func(a, b StatusPeer) int { return strings.Compare(a.PeerID, b.PeerID) })
	s.Media = n.mediaStatus()
	return s
}

func members(ms []election.Member) []StatusMember {
	out := []StatusMember{}
	for _, m := range ms {
		out = append(out, StatusMember{PeerID: m.ID.String(), Utility: m.Utility})
	}
	return out
}

// WriteText writes s for people.
func (s Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("peer\t%s", s.PeerID)
	p("domain\t%s", s.Domain)
	p("ready\t%s", s.readyText())
	p("role\t%s (epoch %d)", s.Role, s.Epoch)
	for _, a := range s.Addrs {
		p("address\t%s", a)
	}
	if s.SIP != nil {
		p("sip\tudp %s, tcp %s", orNone(s.SIP.UDP), orNone(s.SIP.TCP))
		if s.SIP.TLS != "" || s.SIP.WS != "" || s.SIP.WSS != "" {
			p("sip\ttls %s, ws %s, wss %s", orNone(s.SIP.TLS), orNone(s.SIP.WS), orNone(s.SIP.WSS))
		}
	}
	for _, m := range s.Proxies {
		p("proxy\t%s (utility %.3g)", m.PeerID, m.Utility)
	}
	for _, m := range s.Candidates {
		p("candidate\t%s (utility %.3g)", m.PeerID, m.Utility)
	}
	for _, o := range s.Overlays {
		p("overlay\t%s: %d peers in routing table", o.Name, o.RoutingTable)
	}
	for _, r := range s.Registrations {
		p("registration\t%s, expires in %s", r.AOR, r.Expires.Sub(s.Time).Round(time.Second))
		for _, c := range r.Contacts {
			p("  contact\t%s, expires in %s", c.URI, c.Expires.Sub(s.Time).Round(time.Second))
		}
	}
	for _, pr := range s.Peers {
		p("connected\t%s %s", pr.PeerID, pr.Path)
	}
	for _, c := range s.Connections {
		kind := "direct"
		if c.Relayed {
			kind = "relayed"
		}
		p("connection\t%s %s %s %s", c.PeerID, kind, c.Direction, c.Addr)
	}
	for _, c := range s.Calls {
		media, down := "", strings.Join(c.Downstream, " ")
		if c.Media {
			media = ", media anchored"
		}
		if down == "" {
			down = "-"
		}
		p("call\t%s %s %s -> %s, %s for %s, from %s to %s%s", c.CallID, c.Direction, c.From, c.To, c.State,
			s.Time.Sub(c.Started).Round(time.Second), c.Upstream, down, media)
	}
	for _, m := range s.Media {
		phone := m.Phone
		if phone == "" {
			phone = "not known yet"
		}
		p("media\t%s m=%d ports %d/%d, %s to %s, phone %s: %d packets to the peer, %d to the phone", m.CallID, m.Index,
			m.RTPPort, m.RTCPPort, m.Path, m.Remote, phone, m.ToPeer, m.ToPhone)
	}
	return tw.Flush()
}

// readyText says which calls the node routes, and why not others.
func (s Status) readyText() string {
	alone := ""
	if !s.Joined {
		alone = " (alone: no peer in the domain yet)"
	}
	switch {
	case s.ReadyGlobal:
		return "calls in " + s.Domain + " and to other domains" + alone
	case s.Ready:
		return "calls in " + s.Domain + alone + "; other domains: not yet, no proxy known"
	}
	return "not yet: joining " + s.Domain
}

func orNone(s string) string {
	if s == "" {
		return "off"
	}
	return s
}
