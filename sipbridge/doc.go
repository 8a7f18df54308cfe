// Package sipbridge is a hiersip node's SIP front end. Towards the node's local user agents it
// is an ordinary SIP registrar and outbound proxy on UDP and TCP (default 127.0.0.1:5060);
// towards other nodes it speaks SIP over libp2p streams, so that calls cross NATs the way
// libp2p connections do (relays, hole punching). It implements the call flows of
// draft-shi-p2psip-hier-arch-00 §7 inside a domain, and leaves a hook for the inter-domain
// hop through elected proxies.
//
// # Usage
//
//	loc := myNode // implements sipbridge.Locator: Domain, Register, Lookup
//	b, err := sipbridge.New(h, loc,
//		sipbridge.WithListen("127.0.0.1:5060"),
//		sipbridge.WithLogger(logger),
//		sipbridge.WithInterDomain(resolveProxy), // optional: next hop for other domains
//	)
//	if err != nil { ... }
//	defer b.Close()
//
// New binds the listeners, registers the [ProtocolID] stream handler on the host and starts
// serving; Close undoes that (a second Close returns an error wrapping net.ErrClosed). The
// host and the Locator stay the caller's.
//
// # Architecture
//
// The bridge has the layers sipgo has — transport, transaction, proxy core — and uses
// sipgo for messages and their parser only:
//
//   - Transports (transport_udp.go, transport_tcp.go, links.go): the UA-facing UDP socket,
//     the UA-facing TCP connections, the libp2p streams. Each socket, connection or stream
//     is read by one goroutine in arrival order; each message spends its source's raw
//     budget, is parsed once, and goes to the admission chain. Nothing parses it again.
//     Writes to a peer are queued on the peer's link and written by the link's writer,
//     batched (whatever queued up meanwhile goes in one stream write); UDP writes go to the
//     socket, IP fragmenting what is larger than a datagram's usual size.
//   - The admission chain (admission.go), one for all three transports, in the shape of
//     CoreDNS's plugins: rate (buckets.go), valid (validate.go), trust (relaypolicy.go), tx
//     (the transaction layer), bound, digest (digest.go), order (order.go). Each link
//     decides, counts, and answers, drops or passes on.
//   - The transaction layer (transaction.go, txlayer.go): server and client transactions
//     for UAs and peers alike, satisfying sip.ServerTransaction and sip.ClientTransaction;
//     RFC 3261 §17's timers over UDP, none over the reliable transports. Readers never wait
//     on them: a response is handed to its client transaction through a buffered channel
//     (when the relay is slow, provisionals beyond the buffer are dropped, never the final
//     one, never the reader blocked). A transaction that has its final answer keeps only
//     the encoded answer or ACK it may have to resend.
//   - The proxy core (core.go): checks, routing (route.go: a pure function of the request
//     and the node's tables that returns a hop, a status, or the lookup to make first;
//     lookups happen outside it), forwarding in composable steps (forward.go), and a relay
//     per proxied transaction between its server and client transactions, whatever
//     transports they use. The registrar (registrar.go) serves REGISTER.
//
// # Registrar
//
// A REGISTER's To AOR must lie in the node's domain (else 403, the reason phrase names the
// domain). Contacts are stored with their granted expiry (bounded by [WithExpires]; below
// the minimum 423 with Min-Expires), "Expires: 0" or "Contact: *" unregister, and a REGISTER
// without Contact is a query. The 200 OK lists the current contacts with their remaining
// expires. After each change the node publishes the AOR's live contacts with
// Locator.Register; a contact that is not refreshed lapses and the node republishes without
// it (a tombstone when none is left). With [WithUsers] REGISTER needs HTTP digest (qop=auth;
// SHA-256 and MD5, RFC 7616/8760) credentials from an htdigest-style users file
// ("user:realm:HA1" lines, HA1 an MD5 hash, a SHA-256 one or both separated by a comma,
// [LoadUsers], [UsersLine]). An AOR holds at most [DefaultMaxContacts] contacts
// ([WithMaxContacts]); a REGISTER that names more, or would leave it with more, gets 403.
// When Locator.Register fails with an error matching [ErrForbidden] (a node of an enrolled
// domain without a certificate for the AOR), the registrar keeps nothing and answers 403 with
// the reason of the [ForbiddenError] in the chain.
//
// # Relaying only for members
//
// With [WithMembership] the bridge relays for members of its domain only: a request from a
// peer that is not a member, for another domain's user or with a Route to another
// non-member node, is answered 403. Requests for this domain's users are served whoever
// sends them.
//
// # Framing between nodes
//
// Protocol "/hiersip/sip/1.0.0" carries SIP messages back to back, as on a SIP stream transport
// (RFC 3261 §18.3): a header block ending in an empty line, then exactly Content-Length body
// bytes; Content-Length is mandatory. Empty lines between messages are keep-alives. Each
// message is parsed with sipgo's parser. A message larger than [WithMaxMessageSize] ends the
// stream; a message that cannot be framed or parsed gets 400 when a response can be built and
// the stream is reset. Deadlines ([ConnLimits]) reset a stream whose message does not arrive
// whole in time, and an inbound stream that carries no message for a while; a node retires
// its own idle outgoing stream before the peer would. Each node keeps one long-lived
// outgoing stream per peer (opened with network.WithAllowLimitedConn, so relayed
// connections work; reopened on failure) and writes everything it sends to that peer —
// requests and responses — on it, in order: messages are queued on the peer's link (at most
// 4096 messages or 8 MiB; beyond, the send fails as if the link were down) and its writer
// writes what has queued up in one write of up to 256 KiB. Nobody who sends waits for the
// stream, so a slow peer holds up nothing but its own queue. Incoming streams are read by
// one goroutine each, and requests are handed to a queue per Call-ID, so one dialog's
// messages are processed in the order they arrived. A peer may hold at most
// [WithMaxTransactionsPerPeer] server transactions (503 beyond).
//
// # Routing
//
// Requests from UAs keep their order too: the UDP reader and each TCP connection's reader
// queue every admitted request in its Call-ID's queue as they read it, and responses reach
// their client transactions in the order they were read. An ACK therefore always leaves the
// node before the BYE that followed it, and a 180 before the 200 that followed it.
//
// Every node is a transaction-stateful proxy. A request from a local UA (or from a node) is
// validated (400, 416, 505; 483 when Max-Forwards is 0; 482 when it comes back to this node
// unchanged, see Loops), INVITEs get 100 Trying, and the next hop is chosen:
//
//   - Route headers naming this node are removed; a next Route with an "hsn" (hiersip node)
//     parameter is followed over libp2p to that peer, another Route over UDP/TCP.
//   - Otherwise the Request-URI decides. A URI naming the node itself with a user part
//     (sip:bob@127.0.0.1:5060, as sipp's built-in scenarios send) means bob@<domain>. An AOR of
//     this domain is delivered to the UA's contact when it registered here, else looked up
//     with Locator.Lookup and forwarded over libp2p to the serving node (404 when not bound,
//     480 when that node cannot be reached). A found binding is reused for routing for up to
//     [DefaultLookupCacheTTL] ([WithLookupCache]); when its node cannot be reached the entry
//     is dropped and the request routed again after a fresh lookup. An AOR of another domain goes to the
//     [ProxyResolver] of [WithInterDomain] (404 naming the domain when there is none). Any
//     other URI (a contact address) is sent to directly when it is one of this node's user
//     agents, else answered 403 (see Abuse and faults).
//
// A request sent into the overlay gets a Via "SIP/2.0/P2P <peer-id>;branch=…", Max-Forwards
// decremented, and the draft's §4.3 headers "Node-ID: <sip:user@domain>" (the originating
// user) and "Overlay-ID: <sip:overlay@domain>" if absent. The request as received is never
// modified: the forwarded copy has a header list of its own, sharing the headers it does not
// change. Responses travel back along the Via path: each node matches a response to its
// client transaction by branch, removes its Via and answers its own server transaction; a
// 2xx to an INVITE that matches none (retransmitted, or another fork's) is forwarded
// statelessly. A CANCEL is matched to its INVITE (by branch and sent-by for UAs, branch and
// peer for nodes), answered 200 and propagated; the INVITE then ends with the callee's 487
// (the node's own after 32 s). Retransmissions from UAs are absorbed by the transaction
// layer; streams are reliable and need none. Responses to UAs go to the address the request
// came from (symmetric response routing, RFC 3581 style), which also suits UAs behind NAT.
//
// # The direct in-dialog path (draft §7 step 11)
//
// The caller's node and the callee's node — not intermediate proxies — insert a
// Record-Route "<sip:HOST:PORT;transport=udp;lr;hsn=PEERID>": HOST:PORT is the address the
// node's own UA reaches it at (see Addresses) and hsn its libp2p peer ID (which the other
// node uses). When caller and callee are UAs of the same node and reach it at different
// addresses or transports, the node adds two, the callee's on top (double record-routing). A later ACK, BYE or re-INVITE from the caller therefore reaches the caller's node,
// which pops its own Route and opens a stream straight to the peer named by the callee node's
// hsn — no overlay lookup, no proxies — and that node pops its Route and delivers to the
// Request-URI (the callee's contact). So that this works across domains too, where the two
// nodes share no overlay, each record-routing node adds "Hiersip-Node: <peer-id> <multiaddr>…"
// to the INVITE (caller's node) or to its responses (callee's node) while they travel between
// nodes; the other end adds those addresses to its peerstore, and the header is removed
// before anything reaches a UA. A UA that ignores Record-Route (sipp's built-in uac)
// still works: its in-dialog requests name the AOR or the node itself and are routed as
// initial requests.
//
// # Addresses
//
// A node bound to a wildcard address (0.0.0.0 or [::]: Go binds one dual-stack socket, so
// both serve IPv4 and IPv6 UAs) has every address of its machine: a Route or Request-URI
// naming any of them at the node's SIP port names the node (the interface list is re-read
// on a miss, at most every 2 s). Into Via, Record-Route and the keep-alives' headers it
// writes one concrete address: [WithAdvertise] (host[:port], as Kamailio's advertise, for
// a server behind NAT or a cloud instance; a Route naming it names the node too), else the
// address of the interface the message leaves from (a route lookup per destination, kept
// 30 s), else the bound address. A UA on the node's own machine (a loopback destination)
// is always given loopback. [Bridge.UDPAddr] and the start log show the bound address as
// configured ("0.0.0.0:5060"), the machine's addresses and what is advertised. IPv6 hosts
// are bracketed in URIs and Via ("[2001:db8::20]:5062").
//
// # Loops
//
// Every Via the node adds — the overlay Via and the Via of requests to UAs — has a branch
// "z9hG4bKhs" + 16 hex digits + "." + random, the hex digits hashing the node's peer ID with
// the routing fields of the request as received (Request-URI, From and To tags, Call-ID,
// CSeq number, Route, Proxy-Require, Proxy-Authorization; not the top Via, RFC 3261
// §16.6 step 8). A request carrying a Via of this node (by peer ID, or by one of its
// addresses and port) whose hash matches the request as it arrives now has been here in the
// same state: it loops, whichever way — overlay, UDP, TCP, through a UA — brought it back,
// and is answered 482. A different hash is a spiral (the Request-URI or Route changed, as
// when the node itself turned an AOR into a contact) and is served; Max-Forwards bounds
// spirals. A REGISTER whose Contact names the node is refused with 400.
//
// # Phones behind NAT
//
// A request from a UA whose top Via does not name its source (UDP: address and port; TCP:
// address) came through a NAT (RFC 3581). A REGISTER's contacts are then stored as sent
// (the 200 OK lists them so), together with that source and transport, and requests for
// them go to the source: over UDP from the node's SIP port, over TCP on the phone's own
// connection while it is open (RFC 5626 flow reuse; else to the contact). Every
// [WithNATKeepalive] (default [DefaultNATKeepalive]) the node sends an OPTIONS to each such
// source so that the NAT keeps the mapping. In a dialog, the Contact of a request or a
// 1xx/2xx response from a UA behind NAT is rewritten to its source address (as Kamailio's
// fix_nated_contact does), so that in-dialog requests come back through the node's
// Record-Route to an address it can reach. Forwarded requests carry received/rport in the
// UA's Via.
//
// Against reflection: only addresses the node received a local UA's own messages from are
// ever used this way. A forged Via or Contact can only make the node send to the forger's
// own source. The private Contact of a UA behind NAT is never sent to: requests naming a
// registered one go to its source, and a dialog's is not remembered as a UA address (a
// peer's request to it gets 403, as to any address that is not a local UA's). The
// keep-alives go only to sources of live registrations, one OPTIONS per source and interval.
//
// # Registrations across restarts
//
// With [WithRegistrationStore] the registrar's live contacts (URI, expiry, Call-ID and
// CSeq, NAT source and transport) are kept in a file, rewritten at most once a second after
// changes, less often when it is large (at most 1 MiB/s), as a synced temporary file renamed
// over the old one (a crash leaves one whole file), and on Close. New restores the live contacts of the node's domain — at most
// 100,000, from a file of at most 64 MiB, each expiry cut to the maximum registration
// interval, contacts naming the node dropped — and publishes them again; a file that cannot
// be parsed is renamed to .corrupt with a warning. The file is as trusted as the data
// directory that holds the node's key (mode 0600): whoever can write it can redirect the
// node's calls anyway.
//
// # Several devices, messages that wait, presence (issue 19)
//
// With a DeviceLocator (the node's locator) an INVITE or MESSAGE for a user of the domain
// is forked to every live device of the user, on this node and at every other node of the
// AOR's device set (fork.go: fork.NewPlan, fork.Selector as the RFC 3261 §16.7 response
// context; a branch to another node carries Hiersip-Fork, and that node forks to its own
// devices only). A REGISTER's +sip.instance is kept and answered with the device's public
// GRUU; a request to a GRUU reaches that device. A MESSAGE no device can take goes to the
// MessageBox (WithMessageBox, mailbox.go: 202 Accepted) and is delivered when a device of
// the user registers here. PUBLISH and SUBSCRIBE go to the user's presence home, whose
// presence agent answers (presence.go); SUBSCRIBE is record-routed like INVITE. The reg
// and message-summary packages (the latter fed from the MessageBox) are answered by the
// subscribing phone's own node. With a DeviceSetNotifier, a node serving devices of a user
// whose home is another node publishes their registrations there (regpresence.go), so the
// user's presence counts every device of hers.
//
// # Media
//
// With [WithMedia] the node anchors the media of calls between its UAs and UAs of other
// nodes at a media.Relay (package media; README "Media"). Only at the end nodes: a
// message from a local UA into the overlay, or from the overlay to a local UA — never at a
// proxy (overlay in, overlay out), nor for a call between two UAs of the node. Into the
// overlay, the phone's SDP (parsed with pion/sdp) opens a session per active m-line, tells
// the relay where the phone receives and gets the attribute "a=x-hiersip-anchor:<peer-id>";
// towards the phone, an SDP with the other node's attribute is rewritten to the node's
// ports (c=, o=, m=, a=rtcp; ICE and the attribute removed; port 0, hold, rtcp-mux and
// a=crypto kept). An SDP without the attribute means the other end does not anchor: the
// call's sessions close and its SDPs pass untouched. Every place SIP carries offers and
// answers is handled: INVITE, 18x, 2xx (also retransmitted), ACK, UPDATE, PRACK,
// re-INVITE. Media may go only to the IPs the phone's SIP came from or went to. A call's
// sessions end with its BYE, a final non-2xx answer to its INVITE, or the phone's
// registration ending; an INVITE the relay has no room for gets 503.
//
// Each device of a forked call keeps its own sessions (a leg per branch to a local
// device): the first branch uses the call's own sessions, every other one's node adds the
// branch's token to the attribute ("a=x-hiersip-anchor:<peer-id> <token>"); the caller's
// node opens a leg per token, and both derive the wire session ID from the Call-ID and
// the token. A branch's CANCEL or
// failure closes its leg; at the caller's node a 2xx closes the other legs. A peer can
// open at most 32 legs in a call, each counted against its share of the relay.
//
// # Calls
//
// [Bridge.Calls] lists the calls the node is in (the node's /status and status page): each
// INVITE dialog it relays, with its Call-ID, From and To AORs, state (early, confirmed),
// direction (out, in, local, through), start, the peer or phone it came from and the peers
// or phones it went to, and whether the node anchors its media (calls.go). A call is added
// when the node forwards its initial INVITE, confirmed by the 2xx, and removed by a final
// failure (rejection, CANCEL, timeout, unreachable hop) or by a BYE carrying the dialog's
// Call-ID and both tags — so a stranger's forged BYE cannot hide a call. A proxy between two
// nodes does not record-route and sees no BYE: it lists a call only until its final answer.
// The table is bounded (16,384 calls): a flood of INVITEs adds at most one entry per
// proxied transaction (themselves bounded by the limits); when full, the confirmed call
// idle longest goes, and new calls are not listed while all are early. A confirmed call
// with no in-dialog request through the node for 24 h is dropped (a phone gone without BYE).
//
// # User agent
//
// hiersip's own user agent (Register, Call, Hangup, Message, SDP and RTP), for scripts,
// tests and demos, is package sipua; it shares no code with the proxy.
//
// # Limits
//
// Requests to UAs over 1300 bytes (inter-domain INVITEs carry several Vias and
// Record-Routes) are sent over UDP anyway and fragmented by IP, as Kamailio does. A binding
// with several contacts is not forked: the most recently registered contact gets the
// request. With [WithUsers], out-of-dialog requests from UAs need credentials of their From
// user; in-dialog requests (with a To tag) are not challenged. The UDP socket's buffers are
// [WithUDPBuffer] (default 4 MiB; past net.core.rmem_max with CAP_NET_ADMIN).
//
// # Overload
//
// [Limits] ([WithLimits], [DefaultLimits]) gives every UA source IP and every peer token
// buckets of its own: out-of-dialog requests beyond the rate are answered 503 with
// Retry-After (statelessly, before the transaction layer), ACKs, in-dialog requests
// and responses draw on a larger bucket, and whatever exceeds a source's overall budget is
// dropped unparsed. Concurrent transactions are bounded per source, for all UAs, and per
// peer (503). Wrong digest credentials are checked at most Limits.AuthFailures times per
// source and window; further attempts get 503 unchecked. Known and unknown users get the
// same answers (401 with a fresh nonce, or 403). [Bridge.Stats] counts what was refused.
//
// # TLS and WebSocket
//
// [WithTLS], [WithWS] and [WithWSS] add SIP over TLS (RFC 5630: sips: and transport=tls
// URIs route over it) and over WebSocket (RFC 7118, gobwas/ws) for user agents; they are
// the TCP transport with crypto/tls and WebSocket framing between the socket and the
// messages (transport_tls.go, transport_ws.go), with the same admission chain, raw budget,
// deadlines and caps (MaxTCP and MaxTCPPerSource count the connections of all four
// together). A contact registered over TLS, WS or WSS is reached on the connection it
// registered on (the flow is the contact): a WebSocket client's .invalid Contact is never
// looked up; the node never dials a WebSocket client and dials a TLS one only with
// [WithTLSClient]. The WebSocket handshake needs the "sip" subprotocol; the node pings
// WebSocket connections at a third of the idle timeout.
//
// # Ordinary SIP domains
//
// With [WithOutbound], a request for a domain that the inter-domain resolver does not
// know (domains.ErrNotFound: not in the global overlay) goes to that domain's SIP servers
// as RFC 3263 finds them (package sipdns: its policy first, then NAPTR, SRV, A/AAAA), with
// failover to the next server when one stays silent for the try time or cannot be
// reached; sipdns's errors become the answer (604 for a domain that does not exist, 404,
// 403, 503). The node record-routes such dialogs. Only its own UAs and members of its
// domain can make a request leave, and in-dialog requests go outside only to addresses
// the dialog's INVITE went to or its answers named (outbound.go). The overlay's Vias are
// disguised on the way out ("SIP/2.0/TCP <peer-id>.invalid;hsv": Kamailio parses no
// "SIP/2.0/P2P") and restored in the answers.
//
// With [WithPublic], [WithPublicTCP] and [WithPublicTLS], ordinary SIP servers reach the
// domain's users at a public UDP, TCP and TLS address: no digest, no REGISTER, only routes that stay inside the domain (403
// otherwise), rate limits as for UAs; the node record-routes those dialogs with that
// address (public.go). A call whose SDP is WebRTC (DTLS fingerprint, UDP/TLS/RTP/SAVPF) is
// not anchored: browsers' media go end to end (webrtc.go).
//
// # Abuse and faults
//
// Who may send what, and what a forged, replayed or oversized message does:
//
//   - Anyone who reaches the UA-facing listeners. A node without users serves only user
//     agents on loopback and on [WithTrustedNetworks] (403 to others, logged at start);
//     with users, out-of-dialog requests need digest credentials. Whatever the source, the
//     node sends over UDP/TCP only to its own user agents (registered contacts, or the
//     Contact a local UA used from its own address): never to an address a request names,
//     so it is no open relay and no reflector (relaypolicy.go).
//   - A captured Authorization is good for nothing: a nonce is used once per nonce count
//     (401 stale=true otherwise); wrong passwords are checked at most Limits.AuthFailures
//     times per window per source and per account (digest.go).
//   - Bytes that are no SIP message: answered 400 where a response can be built, dropped
//     otherwise, logged whole only at debug level. RFC 4475's messages get the answers the
//     RFC names, over UDP and TCP (malformed.go, transport_tcp.go).
//   - Logs: every line goes through a guard that lets a few lines per cause and source
//     through per window and summarises the rest; payloads only at debug level, strings cut
//     to 256 bytes (logguard.go).
//   - Slow consumers: no reader waits for a consumer. A peer that reads slowly fills only
//     its own link's bounded queue; a relay slow to take responses loses provisionals, not
//     the reader (see Architecture). A UA on TCP that stops reading holds only the writes
//     to its own connection: a reader that forwards it a stray 2xx (from a peer's stream or
//     another UA) hands the write off, at most 64 at once, and beyond drops it (a 2xx is
//     retransmitted by its sender), so a peer flooding strays at a stalled UA stalls nothing.
//   - Connections and streams: deadlines for idle connections and half messages, caps per
//     source IP, per peer and in total, the TCP total within a quarter of RLIMIT_NOFILE
//     ([ConnLimits], conncap.go).
//   - Registrations: contacts per AOR and per REGISTER bounded; over UDP a REGISTER's answer
//     stays within twice its size, so that it cannot amplify a spoofed source
//     (contactcap.go).
//   - TLS, WS and WSS listeners: a TLS handshake or a WebSocket upgrade must finish
//     within the message timeout, else the connection closes (a client that connects and
//     says nothing holds a place of the caps no longer); a WebSocket message is bounded by
//     the message size limit (a bigger one closes the connection, 1009); the WebSocket
//     Origin is not checked: a page of another site can make a visitor's browser connect,
//     but it gains nothing — the registrar asks digest credentials, which the browser does
//     not hold for it (no cookies or ambient authority). Over TLS, digest passwords are
//     never seen on the wire; a self-signed certificate protects only phones that pin it.
//   - Faults: a node that loses the node a call came from (no connection left, or a
//     provisional answer that could not be sent there, and no connection to be made within
//     2 s) cancels the call towards the callee; a lost provisional answer alone ends
//     nothing. A 2xx it cannot send back it acknowledges and hangs up (ACK, BYE), so that
//     no phone is left off-hook (orphans.go). A request within a dialog whose link to the
//     next node failed is sent again, for up to 8 s, on a new connection (linkretry.go).
//
// # Time
//
// Record times, caches and periodic jobs (registrations and their sweep, the registration
// store, NAT keep-alives, the lookup cache, the media call table) follow the bridge's
// clock (WithClock, github.com/benbjohnson/clock; package node passes its own). Network
// deadlines, arrival times and the rates measured on them, and the transaction layer's
// timers follow the system clock (see WithClock).
//
// The package changes no process-wide state: sipgo's package logger, sip.UDPMTUSize and
// sipgo's timers stay as the program set them (the bridge uses neither sipgo's transports
// nor its transaction layer, and keeps RFC 3261's timer values per transaction).
package sipbridge
