// Package fork decides where a request for a user with several devices
// goes and which of their answers the caller gets (issue 19, preview): a
// pure fork plan and a pure RFC 3261 §16.7 response context, for the proxy
// core to use. It does no I/O: lookups happen before, sends after.
//
// # Several devices per AOR, across nodes
//
// A user's devices may register at several nodes of the domain. Each
// serving node publishes one entry of the AOR's device set
// (domains.DeviceSet, stored under domains.DeviceSetKey): its peer ID and
// addresses and its devices by instance tag (domains.InstanceTag, a hash of
// the RFC 5626 +sip.instance), never a contact address. The entry is
// signed by the node; the set is sealed by the node that wrote it last and
// signed by the owner, under the ownership rules of issue 15:
//
//   - open domain, user with a user key: the set is signed with the user
//     key, which every node whose users file holds the user's line has; a
//     node adds a device because the device authenticated with the user's
//     digest credentials at it and the node holds the key. Any number of
//     such nodes (up to domains.MaxServingNodes) share the set.
//   - open domain, user without a key: the node that first stored the set
//     owns it and it lists only that node's devices; several devices work
//     on that node only (a second node gets ErrOtherOwner → 403, as today).
//   - enrolled domain: every certified node is the same owner; the writer
//     and every entry's node must carry a certificate for the AOR.
//
// A storing node replaces a set of the same owner only by one with a
// higher sequence number that keeps every other node's live entry (at the
// same or a newer entry version): a node writing from a stale view cannot
// drop devices another node added. domains.PublishDevices reads, merges,
// writes and reads back; lookups merge what storers hold
// (domains.LookupDeviceSet), so two nodes registering at the same moment
// are both found.
//
// # The fork plan
//
// NewPlan takes the device set, this node's registered contacts of the AOR
// and the Request-URI's GRUU and returns the targets, forked in parallel:
// each local device once (the newest flow of an instance), each other
// serving node once (it forks to its own devices; a request arriving from
// another node, Input.FromPeer, goes to local devices only, so there are no
// loops). A device listed at two nodes is reached where it registered last.
// A public GRUU (RFC 5627, gr=<instance>) selects that device only. A local
// device registered with push parameters and no live flow is a target with
// Wake set: the node wakes it (package push) and sends its branch when it
// re-registers, within Timer C. No target: 404 when nothing is known of the
// AOR, 480 otherwise (a MESSAGE then goes to the mailbox instead).
//
// # Choosing the answer
//
// Selector is the response context of RFC 3261 §16.7 for the forked
// branches: it forwards provisional responses, every 2xx of an INVITE at
// once (and cancels the other branches), holds other finals until every
// branch completed and then forwards the best (6xx first, then the lowest
// class, 401/407 with every challenge aggregated, 503 turned into 500),
// cancels everything on a 6xx or an upstream CANCEL, and applies Timer C
// (§16.8) and the rule that a CANCEL waits for a provisional response
// (§9.1). Events in, Actions out; the caller owns the transactions and
// timers.
//
// # Forking and media anchoring
//
// Each branch is its own early dialog (its own To tag) and, where the node
// anchors media (package media), its own media session: an offer in the
// INVITE is relayed to every branch, each 18x/2xx answer with SDP gets a
// session keyed by (Call-ID, To tag) of its branch, and the caller may see
// several early-media answers. When one branch answers, the sessions of the
// cancelled branches are released with their 487 (or on Timer C); a second
// 2xx that races the first (two devices answered at once) is forwarded like
// the first, the caller ACKs and BYEs it, and its session ends with that
// BYE. Nothing of one leg's media reaches another.
//
// # What an attacker can do
//
// A set can be written only by its owner (user key, the first node for a
// keyless user, certified nodes) and an entry only by its node; every
// record is bounded (8 nodes, 16 devices per node, 32 per AOR, 32 KiB), so
// one call forks to at most MaxTargets branches. A node holding the user
// key can list itself (it can take the user's calls, as it can today with a
// binding) but cannot remove another node's live entry, nor forge one. A
// storer sees the AOR, which nodes serve it, how many devices each has,
// their registration times and the tags — hashes of instance IDs that a
// guesser who knows an instance ID can confirm — and no contact address.
package fork
