package sipbridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/fork"
	"github.com/hiersip/hiersip/push"
)

// Push for sleeping phones (RFC 8599, issue 19): a device that registers with pn-provider,
// pn-prid (and pn-param, pn-purr) in its Contact URI may sleep; with WithPush the node
// wakes it through its push gateway before a request is forked to it: the branch waits
// (fork.Waiting) until the device registers again (push.Waiter), then goes to the contact
// it registered, within Timer C. The push parameters never leave the node but to the
// gateway: they are stripped from the requests sent to the device.

// WithPush makes the bridge wake devices registered with push parameters through w
// before forking a request to them.
func WithPush(w *push.Waiter) Option { return func(c *config) error { c.push = w; return nil } }

// pushKey is the push.Waiter key of a contact.
func pushKey(aor domains.AOR, c *contactEntry) string {
	return push.DeviceKey(aor.String(), c.instance, *c.push)
}

// pushRegistered tells the waiter the contacts of a REGISTER registered (again).
func (b *Bridge) pushRegistered(aor domains.AOR, cs []*contactEntry) {
	if b.cfg.push == nil {
		return
	}
	for _, c := range cs {
		if c.push != nil {
			b.cfg.push.Registered(pushKey(aor, c))
		}
	}
}

// asleep reports whether c must be woken before a request reaches it.
func (b *Bridge) asleep(c *contactEntry) bool { return b.cfg.push != nil && c.push != nil }

// wakeTarget wakes the device of target t (a local contact) and reports on fc.events
// when it registered again or could not be woken.
func (b *Bridge) wakeTarget(ctx context.Context, fc *forkCall, i int, aor domains.AOR, t fork.Target) {
	r := fc.r
	key, params, ok := b.reg.pushOf(aor, t.Contact)
	err := errNotWoken
	if ok {
		typ := push.TypeMessage
		timeout := nonInviteTimeout
		if r.req.IsInvite() {
			typ, timeout = push.TypeCall, inviteTimeout
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		// The wake-up's ID names neither the call nor the caller.
		id := sha256.Sum256([]byte(b.selfStr + "\n" + r.req.CallID().Value() + "\n" + strconv.Itoa(i)))
		err = b.cfg.push.Wake(wctx, key, push.Notification{Params: params, Type: typ,
			ID: hex.EncodeToString(id[:8]), Expiry: time.Now().Add(timeout)})
		cancel()
	}
	select {
	case fc.events <- forkEvent{b: i, woken: true, err: err}:
	case <-fc.stop:
	}
}

// errNotWoken: the device has no push parameters any more.
var errNotWoken = push.ErrNotWoken

// pushOf returns the waiter key and push parameters of aor's contact uri.
func (r *registrar) pushOf(aor domains.AOR, uri string) (string, push.Params, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.aors[aor.String()]; e != nil {
		for _, c := range e.contacts {
			if c.uri.String() == uri && c.push != nil {
				return pushKey(aor, c), *c.push, true
			}
		}
	}
	return "", push.Params{}, false
}

// wokenHop returns the hop of the device of instance (or of contact uri, for a device
// without an instance) as it registered last: waking may have changed its contact.
func (r *registrar) wokenHop(aor domains.AOR, instance, uri string) (hop, bool) {
	if instance == "" {
		return r.contactHop(aor, uri)
	}
	r.mu.Lock()
	var newest *contactEntry
	if e := r.aors[aor.String()]; e != nil {
		now := time.Now()
		for _, c := range e.contacts {
			if c.instance == instance && c.expires.After(now) && (newest == nil || !c.expires.Before(newest.expires)) {
				newest = c
			}
		}
	}
	if newest == nil {
		r.mu.Unlock()
		return hop{}, false
	}
	u := newest.uri.String()
	r.mu.Unlock()
	return r.contactHop(aor, u)
}

// stripPush removes the push parameters from a request's Request-URI going to a device.
func stripPush(u *sip.Uri) {
	if u != nil && u.UriParams != nil {
		push.Strip(u)
	}
}
