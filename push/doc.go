// Package push wakes sleeping phones (RFC 8599, issue 19 preview): it
// reads the push parameters a device registers with, posts notifications
// to the node's push gateway, and lets a call wait until the woken device
// registers again.
//
// # Parameters
//
// A device that may sleep registers with pn-provider (apns, fcm, webpush),
// pn-prid (its token at that service), optionally pn-param and pn-purr, as
// Contact URI parameters (ParseContact). The node keeps them with the
// contact; they never leave it except to the gateway (device sets publish
// instance tags, not contacts, and Strip removes them from requests sent on
// to the device).
//
// # The gateway
//
// The node does not hold APNs or FCM credentials: it POSTs a JSON body
// (Body, version 1: provider, param, prid, purr, type, id, expires) to a
// gateway URL configured per node — https, or http to a loopback address —
// which holds them and talks to the push services (a Flexisip-style push
// gateway, or the operator's own). The body names neither the caller nor
// the AOR: the gateway learns that a device is wanted, not by whom. Each
// attempt is bounded (WithTimeout, 5 s), failures the gateway may recover
// from (network errors, 429, 5xx, honouring Retry-After up to a minute)
// are retried twice with a doubling backoff but never past the
// notification's expiry, 404/410 report the token gone (ErrInvalidToken:
// the registrar drops the device's push parameters), other 4xx refuse it.
// At most WithMaxInFlight posts run at once (ErrBusy beyond).
//
// # Waking a device for a call
//
// The fork plan (package fork) marks a device registered with push
// parameters and no live flow as Wake. The proxy core starts its branch
// Waiting, calls Waiter.Wake with Timer C of the call as the deadline, and
// sends the branch (Selector.Send) when Wake returns nil — the registrar
// called Registered for that device (DeviceKey: AOR and instance, or the
// token) on its new REGISTER. Callers that wake one device at once share
// one push. If the device does not register in time Wake returns
// ErrNotWoken and the branch counts as 480; the other branches ring on.
// package pushtest is a gateway for tests.
package push
