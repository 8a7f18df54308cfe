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
// # Records
//
// A Binding maps User-Resource-ID → the node that serves the user's agents
// (peer ID, addresses, UA contacts, expiry, sequence number). It travels in a
// libp2p signed envelope sealed by that node's key. BindingValidator rejects
// a bad signature, a signer other than the record's peer, a key that is not
// Hash(AOR), an expired record, a record expiring more than
// MaxBindingLifetime ahead, an AOR outside the domain and oversized values.
// Select prefers the highest sequence number of the same signer, so a
// tombstone (Removed) stored by the owner wins over its older bindings.
//
// Between different signers a live binding is kept against a newcomer:
// first come, first served until it expires or is unregistered. This is the
// security limit of an open domain: whoever registers a free name first owns
// it for up to MaxBindingLifetime, and a record's Created time is the
// signer's own claim, so a node that back-dates it can win a race for a name
// that has no live binding at the peers it reaches. Domains that need names
// bound to identities use enrollment certificates (Binding.Cert).
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
//
// A ProxyRecord names a domain's elected proxies; it is stored in the global
// overlay under the domain's Overlay-Resource-ID and in the domain overlay
// under LocalProxyResourceID, short-lived, signed by one of the listed
// proxies. The highest election epoch wins.
package domains
