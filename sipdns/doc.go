// Package sipdns finds the SIP servers of a domain as RFC 3263 §4 says:
// NAPTR, then SRV, then A/AAAA, with transport selection, RFC 2782 SRV
// ordering and a list of targets to fail over along. A hiersip proxy uses it
// to route a request for a domain that is not in the global overlay to that
// domain's ordinary SIP servers (Kamailio, Asterisk, a provider).
//
// # Usage
//
//	r, err := sipdns.New(sipdns.WithTransports("tls", "tcp", "udp"))
//	// …
//	targets, err := r.Resolve(ctx, "sip:bob@example.com")
//	if err != nil {
//		code, reason := sipdns.StatusCode(err) // 604, 404, 503, 403, 416, 400
//		// answer the request with code and reason
//	}
//	for _, t := range targets {
//		// send to t.Addr over t.Transport; on a transport error or a
//		// timeout (RFC 3263 §4.3), go on to the next target
//	}
//
// The DNS servers are those of /etc/resolv.conf unless WithServers names
// others. Questions go over UDP with EDNS(0), again over TCP when the answer
// is truncated, to each server in turn. Answers, positive and negative
// (NXDOMAIN and "no records", kept for the SOA minimum, RFC 2308), are
// cached for their TTL (capped by WithMaxTTL) in a bounded LRU cache
// (WithCacheSize); concurrent resolutions of one name share their queries.
// DNS failures (timeouts, SERVFAIL) are never cached.
//
// The transports a client supports, and the order it prefers them in when a
// domain publishes no NAPTR records, are set with WithTransports (udp, tcp,
// tls; default udp, tcp). NAPTR records of other transports (SCTP, or TLS
// when it is off) are skipped.
//
// # Errors
//
// ErrNXDomain (the domain does not exist: 604 Does Not Exist Anywhere) is
// told apart from ErrNoTargets (no SIP server: 404) and from ErrUnavailable
// (the DNS failed: 503), so a proxy can answer a request for a domain that
// does not exist after one query, and from the cache after that.
//
// # Policy
//
// A Policy refuses domains by suffix (allow and deny lists, the longest
// suffix deciding), sends some suffixes to a fixed next hop (Routes), and
// refuses addresses (DenyAddrs; DenyInternal lists loopback and private
// ranges). A refused domain is never looked up.
//
// # Security
//
// Whoever controls a domain's DNS chooses where the proxy sends requests for
// it. Without DNSSEC a forged or poisoned answer can do the same; this
// package relies on the recursive resolver it asks (keep it on the host or
// a trusted network) and checks only that an answer is a reply to its
// question (miekg/dns matches the random message ID, this package the
// question). A domain can point its SRV records at the proxy's own host or
// private network to make it send SIP there: a proxy facing the Internet
// sets Policy.DenyAddrs to DenyInternal. A domain cannot make the resolver
// work without bound: at most 32 records of an answer, 8 NAPTR records, 8
// addresses per host and WithMaxTargets targets are used, NAPTR records are
// followed one step only (flag "s", to SRV), CNAME chains are whatever the
// recursive resolver returns, and every query has a deadline. The TLS
// identity of a target is Target.Domain, the URI's host, never the SRV
// target a DNS answer named (RFC 5922 §4).
package sipdns
