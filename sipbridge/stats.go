package sipbridge

import (
	"github.com/emiago/sipgo/sip"
	"github.com/hiersip/hiersip/domains"
)

// Kinds of call route reported to a call observer (WithCallObserver).
const (
	CallIntraDomain = "intra-domain" // the callee's AOR is in the node's domain
	CallInterDomain = "inter-domain" // the callee's AOR is in another domain
	CallInvalid     = "invalid"      // the Request-URI names no AOR
)

// WithCallObserver calls f with the final status code of every initial INVITE
// (no To tag) the bridge routes, whether it came from a local UA or from another
// node: kind is CallIntraDomain, CallInterDomain or CallInvalid; code is the
// final response the bridge sent upstream (2xx answered, the callee's or a
// proxy's failure, or the bridge's own 4xx–5xx). f runs on the bridge's
// goroutines and must not block (a Prometheus counter is the intended use).
func WithCallObserver(f func(kind string, code int)) Option {
	return func(c *config) error { c.callObserver = f; return nil }
}

// InFlight returns the number of requests the bridge is proxying now: server
// transactions whose final response has not been sent yet.
func (b *Bridge) InFlight() int { return int(b.inflight.Load()) }

// observeCall reports req's final answer code to the call observer.
func (b *Bridge) observeCall(req *sip.Request, code int) {
	b.mediaFinal(req, code)
	b.callFinal(req, code) // calls.go
	f := b.cfg.callObserver
	if f == nil || code < 200 || !req.IsInvite() || hasTag(req.To()) {
		return
	}
	kind := CallInvalid
	if aor, err := domains.AORFromURI(&req.Recipient); err == nil {
		kind = CallInterDomain
		if aor.InDomain(b.domain) {
			kind = CallIntraDomain
		}
	}
	f(kind, code)
}
