package sipbridge

import "sync/atomic"

// AbuseStats counts what the bridge refused, closed or suppressed besides its rate limits,
// and the connections and streams it holds (part of Stats).
type AbuseStats struct {
	// Unparsable: messages no parser accepted (answered 400 where a response could be built).
	Unparsable uint64
	// LogSuppressed: log lines the log guard suppressed (summarised per cause and window).
	LogSuppressed uint64
	// AuthStale: credentials with an unknown, expired or already used nonce or nonce count
	// (a replay, or a UA that must authenticate again): answered 401 stale=true.
	AuthStale uint64
	// AuthAccountThrottled: requests with credentials refused unchecked (503) because their
	// account was over its failure budget (counted in AuthThrottled too).
	AuthAccountThrottled uint64
	// RelayRefused: requests refused by the relay policy (403): from a UA outside the trusted
	// networks of a node without users, or to an address that is no user agent of this node.
	RelayRefused uint64
	// ContactsRefused: REGISTERs refused for naming more contacts than allowed (403).
	ContactsRefused uint64
	// TCPConns and Streams are the UA-facing TCP connections and the inbound
	// /hiersip/sip/1.0.0 streams open now.
	TCPConns, Streams int64
	// TCPRefused and StreamsRefused: connections and inbound streams closed at once, their
	// source or peer (or everyone together) being at its cap.
	TCPRefused, StreamsRefused uint64
	// TCPTimedOut and StreamsTimedOut: connections and inbound streams closed by a deadline
	// (idle, or a message not complete in time).
	TCPTimedOut, StreamsTimedOut uint64
	// CalleeLegsEnded: calls whose callee leg the node ended itself (CANCEL, or ACK and BYE
	// after a 2xx) because the hop towards the caller was lost.
	CalleeLegsEnded uint64
	// ResponsesLost: answers that could not be sent to the node their request came from
	// (no connection or stream to it could be had). A lost provisional answer makes the
	// node check that peer, and cancel the callee's leg if it is gone.
	ResponsesLost uint64
	// RequestsResent: in-dialog requests sent again to the next node after their link to
	// it failed (a relayed connection cut at its limits, say), each resend counted.
	RequestsResent uint64
}

type abuseCounters struct {
	unparsable, authStale, authAccountThrottled, relayRefused, contactsRefused atomic.Uint64
	tcpRefused, streamsRefused, tcpTimedOut, streamsTimedOut, calleeLegsEnded  atomic.Uint64
	responsesLost, requestsResent                                              atomic.Uint64
	tcpConns, streams                                                          atomic.Int64
}

func (b *Bridge) abuseStats() AbuseStats {
	c := &b.lim.stats.abuseCounters
	s := AbuseStats{
		Unparsable: c.unparsable.Load(), AuthStale: c.authStale.Load(), AuthAccountThrottled: c.authAccountThrottled.Load(),
		RelayRefused: c.relayRefused.Load(), ContactsRefused: c.contactsRefused.Load(),
		TCPConns: c.tcpConns.Load(), Streams: c.streams.Load(),
		TCPRefused: c.tcpRefused.Load(), StreamsRefused: c.streamsRefused.Load(),
		TCPTimedOut: c.tcpTimedOut.Load(), StreamsTimedOut: c.streamsTimedOut.Load(),
		CalleeLegsEnded: c.calleeLegsEnded.Load(), ResponsesLost: c.responsesLost.Load(),
		RequestsResent: c.requestsResent.Load(),
	}
	if b.guard != nil {
		s.LogSuppressed = b.guard.st.suppressed.Load()
	}
	return s
}
