package media

import (
	"sync/atomic"
	"time"
)

// Reasons a packet is dropped (Stats.Dropped).
const (
	DropStranger       = "stranger"        // from an address that is not the session's phone
	DropNoRemote       = "no_remote"       // the other end node is not known yet
	DropNotLatched     = "not_latched"     // no address of the phone to send to yet
	DropQueueFull      = "queue_full"      // the queue to the other node was full: the oldest audio went
	DropStale          = "stale"           // waited longer than the maximum delay
	DropLinkDown       = "link_down"       // no stream to the other node could be opened
	DropUnknownSession = "unknown_session" // the other node sent for a session this node does not have
	DropWrongPeer      = "wrong_peer"      // a node that is not the session's other end sent for it
	DropOversize       = "oversize"        // larger than MaxPacket
	DropSendFailed     = "send_failed"     // the UDP send to the phone failed
	DropBadFrame       = "bad_frame"       // broken framing: the stream was reset
)

// DropReasons lists every drop reason.
var DropReasons = []string{DropStranger, DropNoRemote, DropNotLatched, DropQueueFull, DropStale, DropLinkDown,
	DropUnknownSession, DropWrongPeer, DropOversize, DropSendFailed, DropBadFrame}

// DelayBuckets are the upper bounds (seconds) of Stats.Delay's buckets.
var DelayBuckets = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1}

// Stats are a relay's counters since it started.
type Stats struct {
	// Sessions open now.
	Sessions int
	// SessionsOpened, SessionsRefused (limits, ports) and SessionsIdle (closed by the
	// idle or hold timeout) count since start.
	SessionsOpened, SessionsRefused, SessionsIdle uint64
	// ToPeer counts packets (and payload bytes) written to other nodes' streams; ToPhone
	// those sent to phones.
	ToPeer, ToPeerBytes, ToPhone, ToPhoneBytes uint64
	// Dropped counts dropped packets by reason (the Drop… constants).
	Dropped map[string]uint64
	// Reopens counts streams reopened after a failure, Migrations moves from a relayed to a
	// direct connection.
	Reopens, Migrations uint64
	// Delay is the time packets spent in this node from the phone's socket to the other
	// node's stream (queueing and the write): cumulative counts per DelayBuckets bound, sum
	// in seconds and count.
	Delay Histogram
}

// Histogram is a cumulative histogram.
type Histogram struct {
	Bounds []float64
	Counts []uint64 // Counts[i]: observations <= Bounds[i]
	Sum    float64
	Count  uint64
}

type counters struct {
	opened, refused, idleClosed atomic.Uint64
	toPeer, toPeerB             atomic.Uint64
	toPhone, toPhoneB           atomic.Uint64
	reopens, migrations         atomic.Uint64
	dropped                     map[string]*atomic.Uint64
	delay                       []atomic.Uint64 // per bucket, not cumulative; last: +Inf
	delaySum, delayCount        atomic.Uint64
}

func (c *counters) init() {
	c.dropped = make(map[string]*atomic.Uint64, len(DropReasons))
	for _, r := range DropReasons {
		c.dropped[r] = new(atomic.Uint64)
	}
	c.delay = make([]atomic.Uint64, len(DelayBuckets)+1)
}

func (c *counters) drop(reason string) { c.dropped[reason].Add(1) }

// sent counts a packet of n payload bytes written to a stream after d nanoseconds in the node.
func (c *counters) sent(d int64, n int) {
	c.toPeer.Add(1)
	c.toPeerB.Add(uint64(n))
	secs := float64(d) / float64(time.Second)
	i := 0
	for i < len(DelayBuckets) && secs > DelayBuckets[i] {
		i++
	}
	c.delay[i].Add(1)
	c.delaySum.Add(uint64(max(d, 0)))
	c.delayCount.Add(1)
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	c := &r.stats
	r.mu.RLock()
	n := len(r.sessions)
	r.mu.RUnlock()
	st := Stats{Sessions: n, SessionsOpened: c.opened.Load(), SessionsRefused: c.refused.Load(), SessionsIdle: c.idleClosed.Load(),
		ToPeer: c.toPeer.Load(), ToPeerBytes: c.toPeerB.Load(), Reopens: c.reopens.Load(), Migrations: c.migrations.Load(),
		Dropped: make(map[string]uint64, len(c.dropped))}
	st.ToPhone, st.ToPhoneBytes = c.toPhone.Load(), c.toPhoneB.Load()
	for k, v := range c.dropped {
		st.Dropped[k] = v.Load()
	}
	st.Delay.Bounds = DelayBuckets
	st.Delay.Counts = make([]uint64, len(DelayBuckets))
	var cum uint64
	for i := range DelayBuckets {
		cum += c.delay[i].Load()
		st.Delay.Counts[i] = cum
	}
	st.Delay.Count = c.delayCount.Load()
	st.Delay.Sum = float64(c.delaySum.Load()) / float64(time.Second)
	return st
}
