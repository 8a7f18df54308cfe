// Package domains implements hiersip's overlays (draft §4, §5): the naming of
// users and domains, the signed records stored in the overlays, and the
// kad-dht namespaces of a domain (the draft's local overlay) and of the
// global overlay of proxies.
//
// # Naming
//
// ParseAOR canonicalises a SIP URI (sipgo's parser; scheme, user with its case
// kept, lower-cased host, nothing else). DomainOf picks the domain of a host
// by the longest suffix among known domains; OverlayURI and
// OverlayResourceID give the draft's Overlay URI "sip:overlay@<domain>" and
// its hash. An AOR's User-Resource-ID is AOR.ResourceID.
//
// # Overlays
//
// NewDomainOverlay and NewGlobalOverlay run a kad-dht on a given libp2p host
// with the protocol prefix /hiersip/<domain> or /hiersip/global, in server
// mode, with its own datastore and a namespaced validator for hiersip's
// records only. One host can be in a domain overlay, the global overlay and
// any DHT of its application at once; their routing tables and records stay
// apart. kad-dht never republishes values: the owner re-stores its records
// (package node does so for bindings). Unlike a plain kad-dht, an overlay
// uses relayed ("limited") connections: a member behind a NAT that hole
// punching cannot reach is asked through its relay, so it neither stalls
// stores and lookups nor drops out of the routing tables.
//
// # Records and who may publish them
//
// A Binding maps User-Resource-ID → the node that serves the user's agents
// (peer ID, addresses, how many contacts until when, expiry, sequence
// number). It travels in a libp2p signed envelope sealed by that node's key
// and, when the user has a user key (GenerateUserKey; kept beside the HA1 in
// the users file), is also signed with that key (Binding.Owner,
// SignOwner). BindingValidator rejects a bad signature, a signer other than
// the record's peer, a bad owner signature, a key that is not Hash(AOR), an
// expired record, a record expiring more than MaxBindingLifetime ahead, a
// sequence number more than MaxClockSkew ahead of the clock (Seq follows the
// clock in microseconds), an AOR outside the domain and oversized values.
// Contact URIs are not published (Binding.Redacted): routing needs only the
// serving node.
//
// The owner of a binding is its user key if it has one, else its node; in an
// enrolled domain every certified claimant is the same owner (the authority
// decides). Select implements the rule every storing node applies to
// [incoming, stored] (kad-dht's order, DESIGN §5): a binding of the same
// owner replaces the stored one by a higher sequence number; a binding of a
// different owner replaces it only when the stored one is a tombstone (or
// has expired); otherwise the stored binding is kept, whatever the
// newcomer's Created, Seq or Expires. So a phone whose node died registers at
// another node holding its user key and is callable at once, while nobody
// without the key (or the node's key, for keyless users) can displace a live
// binding. An open domain protects a name only while it is registered: a
// free name goes to its first claimant.
//
// During a lookup kad-dht hands Select [best so far, next answer] in arrival
// order, which an attacker near the key can win by answering first. Select
// therefore reports every pair of live claims of different owners to the
// overlay (a conflict), and a lookup that saw one asks the key's closest
// storers directly and takes the claim most of them hold, a record counting
// also for the records of its owner it supersedes (Overlay.GetBinding). The
// owner stored first and honest storers keep its record, so an attacker wins
// only with most of the key's closest storers: a Sybil near the key.
//
// A ProxyRecord names a domain's elected proxies and its electors (the
// roster), and carries Endorsements: signatures of electors over (domain,
// epoch, proxy). It is stored in the global overlay under the domain's
// Overlay-Resource-ID and in the domain overlay under LocalProxyResourceID,
// short-lived (MaxProxyLifetime), signed by one of the listed proxies. Its
// chain of custody: a record of the same signer replaces the stored one by
// epoch (then issue time); a record of another signer needs an epoch at
// least as high and the stored record's proxy's endorsement (a handoff) or
// endorsements of a majority of the other electors named in the stored record
// (its proxy, gone in a failover, is not counted; ProxySupersedes). A higher epoch alone counts for nothing.
// In an enrolled domain the record carries the authority's public key and
// the signer's certificate; a different key is a different claimant, and a
// validator that knows the domain's authority (WithAuthorities) refuses any
// other. A record no one continues lapses within MaxProxyLifetime, and the
// next claim starts a new chain (first come, first served): there is no
// other root of trust for an open domain's name.
//
// Every overlay answers at most a bounded number of GET_VALUE requests per
// second and peer (WithLookupLimit), so that guessing names is slow.
//
// Every kind of record is sealed and opened the same way (sealed.go): the
// size is checked before anything is parsed, then the envelope's signature,
// the payload and the signer; each kind adds its own checks of who signed
// and what it says (binding.go, proxyrecord.go, cert.go, revocation.go).
//
// # Time
//
// An overlay's validators and records follow its clock (WithClock,
// github.com/benbjohnson/clock; package node passes its Config.Clock):
// expiry, MaxClockSkew, certificate validity. Lookups and their latency
// stay on the system clock.
//
// # Enrolled domains
//
// A domain configured with an authority key (NewEnrollment, WithEnrollment)
// is enrolled. The authority signs Certificates binding a Subject (an AOR,
// or a path.Match glob on the user part, e.g. sip:*@bupt.pastry) of the
// domain to a node's peer ID, with a serial and a validity; a certificate is
// a libp2p signed envelope of at most MaxCertSize bytes, carried in the
// binding it authorises (Binding.Cert). In an enrolled domain
// BindingValidator also requires a certificate of the authority that covers
// the binding's AOR and peer, is valid now and is not revoked, so nobody can
// take a name they were not issued, not even first. Package domains/enroll
// holds the authority's files and the CLI logic.
//
// Revocation works without a server: the authority signs a RevocationList
// (serials, a sequence number) and anyone stores it in the domain overlay
// under RevocationKey, where RevocationValidator accepts only the
// authority's lists and the highest sequence number wins. Every list the
// validator sees (a store at this node, a lookup) is offered to the
// Enrollment, which keeps the newest; node looks the list up periodically
// and re-stores it. Once a node holds a list, its validator refuses the
// revoked certificates' bindings, locally stored ones and those received in
// lookups alike.
package domains
