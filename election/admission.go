package election

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/internal/p2pnet"
)

// This file is the runner's admission of messages (see "Security" in the
// package documentation): who may send, replays, observed utilities,
// certificates, and the endorsements it signs and collects.

// refused counts a refused message and returns false (for validators).
func (r *Runner) refused(reason string) bool {
	if r.o.refuse != nil {
		r.o.refuse(reason)
	}
	r.log.Debug("election: message refused", "reason", reason)
	return false
}

func decodeReason(err error) string {
	if errors.Is(err, ErrBadEpoch) {
		return "epoch"
	}
	return "malformed"
}

// admit decides whether a message m, received from the directly connected
// peer via (its author, or the gossip neighbour that forwarded it), may be
// taken. It returns "" or the reason of a refusal.
func (r *Runner) admit(via peer.ID, m Message) string {
	if r.o.member != nil && !r.o.member(via) {
		return "not_member"
	}
	if online, _, ok := r.o.observe(via); !ok || online < r.o.minAge {
		return "too_new"
	}
	if r.o.verifyCert != nil {
		if err := r.o.verifyCert(m.From, m.Cert); err != nil {
			return "uncertified"
		}
	}
	if !r.seqs.fresh(m.From, m.Seq, r.o.clock.Now()) {
		return "replay"
	}
	return ""
}

// observeConns is the default observer: a peer is observed since the oldest
// of its open connections; it is private if every connection is relayed,
// public-capable only if this host dialed one directly, unknown otherwise.
func (r *Runner) observeConns(p peer.ID) (time.Duration, Reachability, bool) {
	conns := r.h.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return 0, ReachabilityUnknown, false
	}
	now := time.Now()
	var oldest time.Time
	reach := ReachabilityPrivate
	for _, c := range conns {
		st := c.Stat()
		if oldest.IsZero() || (!st.Opened.IsZero() && st.Opened.Before(oldest)) {
			oldest = st.Opened
		}
		if p2pnet.Relayed(c) {
			continue
		}
		if st.Direction == network.DirOutbound {
			reach = ReachabilityPublic
		} else if reach == ReachabilityPrivate {
			reach = ReachabilityUnknown
		}
	}
	if oldest.IsZero() {
		return time.Duration(1<<62 - 1), reach, true // no opening time known: long ago
	}
	return now.Sub(oldest), reach, true
}

// annotate cuts the utilities m claims to what this node observes of their
// owners, when it observes them (a direct neighbour): the sender's, and the
// announced leader's (then m.Observed). Observation only ever lowers a
// claim: a node's claim is already its own Credible utility, so between
// nodes that have seen each other as long as they have been up, claims
// stand, and every node ranks them alike.
func (r *Runner) annotate(m *Message) {
	w := r.o.cfg.Weights
	if online, reach, ok := r.o.observe(m.From); ok {
		m.Utility = min(m.Utility, Credible(m.Utility, online, reach, w))
	}
	m.Observed = false
	if len(m.Roster) > 0 && (m.Type == MsgAnnounce || m.Type == MsgHelloAck || m.Type == MsgHandoff) {
		m.Roster = slices.Clone(m.Roster)
		if online, reach, ok := r.o.observe(m.Roster[0].ID); ok {
			m.Roster[0].Utility = min(m.Roster[0].Utility, Credible(m.Roster[0].Utility, online, reach, w))
			m.Observed = true
		}
	}
}

// prepare stamps an outgoing message: sequence number, certificate and,
// for Hello and Handoff, the endorsement of the leader followed or the
// successor.
func (r *Runner) prepare(m *Message) {
	now := domains.SeqAt(r.o.clock.Now())
	for {
		last := r.lastSeq.Load()
		next := max(now, last+1)
		if r.lastSeq.CompareAndSwap(last, next) {
			m.Seq = next
			break
		}
	}
	m.Cert = r.o.cert
	var leader peer.ID
	switch {
	case m.Type == MsgHello && !m.Leaving:
		leader = r.e.Leader()
	case m.Type == MsgHandoff && len(m.Roster) > 0:
		leader = m.Roster[0].ID
	}
	if leader != "" && leader != r.h.ID() {
		m.Endorse = r.myEnd.get(r.key, r.domain, m.Epoch, leader)
	}
}

// endorseCache keeps the node's last endorsement, re-signed only when the
// epoch or the leader changes.
type endorseCache struct {
	epoch  uint64
	leader peer.ID
	sig    []byte
}

func (c *endorseCache) get(key crypto.PrivKey, domain string, epoch uint64, leader peer.ID) []byte {
	if c.sig != nil && c.epoch == epoch && c.leader == leader {
		return c.sig
	}
	en, err := domains.Endorse(key, domain, epoch, leader)
	if err != nil {
		return nil
	}
	c.epoch, c.leader, c.sig = epoch, leader, en.Sig
	return c.sig
}

// collectEndorsement keeps a roster member's endorsement of this node as
// leader (Hello), or the leaving leader's of this node as its successor
// (Handoff), once verified.
func (r *Runner) collectEndorsement(m Message) {
	if len(m.Endorse) == 0 || r.e.Leader() != r.h.ID() || m.Epoch != r.e.Epoch() {
		return
	}
	if m.Type != MsgHello && m.Type != MsgHandoff {
		return
	}
	r.resetEndorsements()
	if old, ok := r.ends[m.From]; ok && string(old) == string(m.Endorse) {
		return
	}
	if _, ok := r.ends[m.From]; !ok && len(r.ends) >= maxEndorsements {
		return // bounded; only the previous record's electors count anyway
	}
	en := domains.Endorsement{Peer: m.From, Sig: m.Endorse}
	if !en.Verify(r.domain, m.Epoch, r.h.ID()) {
		r.refused("bad_endorsement")
		return
	}
	r.ends[m.From] = slices.Clone(m.Endorse)
	r.syncEndorsed()
}

// maxEndorsements bounds the endorsements a leader keeps per epoch (a
// proxy record carries at most domains.MaxElectors).
const maxEndorsements = 64

// resetEndorsements drops the endorsements held when the node no longer
// leads at their epoch.
func (r *Runner) resetEndorsements() {
	if r.e.Leader() == r.h.ID() && r.e.Epoch() == r.endEpoch {
		return
	}
	if len(r.ends) > 0 {
		clear(r.ends)
		r.syncEndorsed()
	}
	r.endEpoch = r.e.Epoch()
}

func (r *Runner) syncEndorsed() {
	out := make([]domains.Endorsement, 0, len(r.ends))
	for id, sig := range r.ends {
		out = append(out, domains.Endorsement{Peer: id, Sig: sig})
	}
	slices.SortFunc(out, func(a, b domains.Endorsement) int {
		switch {
		case a.Peer < b.Peer:
			return -1
		case a.Peer > b.Peer:
			return 1
		}
		return 0
	})
	r.mu.Lock()
	r.endorsed = out
	r.mu.Unlock()
}

// dialRival connects a leader to another leader it hears of but cannot
// observe, so that the two compare themselves on what they observe (a
// healed partition whose leaders are not neighbours).
func (r *Runner) dialRival(m Message) {
	if m.Observed || len(m.Roster) == 0 || r.e.Leader() != r.h.ID() || m.Type != MsgAnnounce {
		return
	}
	rival := m.Roster[0].ID
	if rival == r.h.ID() || r.ctx.Err() != nil {
		return
	}
	now := r.o.clock.Now()
	if t, ok := r.lastDial[rival]; ok && now.Sub(t) < 10*time.Second {
		return
	}
	if len(r.lastDial) >= 64 {
		clear(r.lastDial)
	}
	r.lastDial[rival] = now
	select {
	case r.sendSem <- struct{}{}:
	default:
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.sendSem }()
		ctx, cancel := context.WithTimeout(r.ctx, r.o.cfg.HelloInterval*4)
		defer cancel()
		_ = r.h.Connect(network.WithAllowLimitedConn(ctx, "hiersip-election"), peer.AddrInfo{ID: rival})
	}()
}

// seqTable remembers the last message number taken from each sender.
type seqTable struct {
	mu   sync.Mutex
	last map[peer.ID]uint64
}

// maxSeqSenders bounds the senders remembered (only admitted members get
// here); on overflow the table forgets everyone, so a replay of a message
// older than the overflow may pass once.
const maxSeqSenders = 4096

// fresh reports whether seq is above the last taken from p and at most
// domains.MaxClockSkew ahead of now.
func (t *seqTable) fresh(p peer.ID, seq uint64, now time.Time) bool {
	if seq == 0 || seq > domains.SeqAt(now.Add(domains.MaxClockSkew)) {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return seq > t.last[p]
}

// take records seq as taken from p, reporting false if it is not fresh.
func (t *seqTable) take(p peer.ID, seq uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq <= t.last[p] {
		return false
	}
	if t.last == nil || len(t.last) >= maxSeqSenders {
		t.last = make(map[peer.ID]uint64)
	}
	t.last[p] = seq
	return true
}
