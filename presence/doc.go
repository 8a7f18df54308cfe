// Package presence is a node's presence agent and event notifier for the
// users it serves (issue 19, preview): a pure state machine for PUBLISH
// (RFC 3903) and SUBSCRIBE/NOTIFY (RFC 6665) of the presence (RFC 3856),
// reg (RFC 3680) and message-summary (RFC 3842) event packages, and the
// documents they carry: PIDF (RFC 3863, application/pidf+xml), reginfo
// (application/reginfo+xml, with RFC 5628 pub-gruu) and simple message
// summaries, read and written with encoding/xml and a line parser.
//
// # The agent
//
// Agent takes events with the time — Publish, Subscribe, SetRegistration
// (the registrar's contacts), SetWaiting (the mailbox's count), Authorize,
// NotifyResult, Tick — and returns the answer to the request and the
// NOTIFYs to send, each with its subscription (dialog and event), the
// Subscription-State value and the body. It sends nothing, reads no clock
// and starts no goroutine; the SIP plane owns the dialogs (SUBSCRIBE is
// record-routed through the nodes like INVITE, so NOTIFYs follow the same
// path across NATs and domains) and calls Tick at NextDeadline.
//
//   - PUBLISH: an initial publication needs a PIDF body of the
//     presentity itself, published by the presentity (the authenticated
//     From); every success gets a new entity tag (SIP-ETag); SIP-If-Match
//     refreshes (no body), modifies (a body) or removes (Expires 0); an
//     unknown or lapsed tag gets 412, a short Expires 423 with Min-Expires,
//     another package 489, another media type 415, a bad document 400.
//   - Presence is the union of the tuples of the presentity's live
//     publications (one per device), newest first; a presentity that
//     publishes nothing is open with one tuple per registered contact
//     (never its address), or closed.
//   - SUBSCRIBE: a new subscription, a refresh, an unsubscription
//     (Expires 0: a last NOTIFY with reason timeout) or a fetch; a NOTIFY
//     is due at once after each. Subscriptions lapse (reason timeout), end
//     on a failed NOTIFY (481, a timeout, any failure but 401/407), and
//     end with reason deactivated when the node shuts down (the watcher
//     subscribes again and reaches the user's next node), noresource when
//     the user is gone, rejected when the user denies the watcher.
//   - Throttle: at most one NOTIFY per subscription per 5 s (RFC 3856
//     §6.6.3); changes in between are merged into one NOTIFY at the end of
//     the interval; a change that leaves the body as it was sends nothing.
//
// # Who may watch
//
// By default (DefaultAuthorize) anyone may watch presence: whether a user
// is registered can be learnt from the overlay anyway, and what a device
// publishes is the user's choice. Only the user itself may watch reg (it
// shows contact addresses) and message-summary (it counts waiting
// messages). WithAuthorizer replaces the policy (Pending holds a watcher
// until Authorize).
//
// # Bounds
//
// Limits bound subscriptions in all, per presentity (64) and per watcher
// (32), presentities (16384) and publications per presentity (16), and
// their lifetimes (60 s to 24 h); documents are at most 16 KiB, 16 levels,
// 1024 elements, 32 tuples, without DTDs (no entity expansion). A
// presentity without state is forgotten.
//
// # Several devices on several nodes
//
// A user's presence lives at one node: its presence home, the live entry
// of the device set with the lowest peer ID (package fork, domains.DeviceSet).
// PUBLISH and SUBSCRIBE for the AOR route there; the home's agent gets
// SetRegistration with its own contacts and, for devices at other nodes,
// one contact per device tag of the set (no address: the reg package shows
// the device's public GRUU instead). When the home changes, it ends its
// subscriptions with reason deactivated and the watchers re-subscribe.
package presence
