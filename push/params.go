package push

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// The SIP URI parameters of RFC 8599 §4.1.
const (
	ParamProvider = "pn-provider" // the push notification service: apns, fcm, webpush (IANA registry)
	ParamParam    = "pn-param"    // service-specific: for APNs "<team id>.<bundle id>.<topic>"
	ParamPRID     = "pn-prid"     // the push resource ID: the device's token at the service
	ParamPURR     = "pn-purr"     // the proxy's unique registration reference (RFC 8599 §4.1.4)
)

// Bounds of the parameters' values (after unescaping).
const (
	MaxProvider = 32
	MaxParam    = 256
	MaxPRID     = 1024
	MaxPURR     = 64
)

// ErrBadParams: push parameters that are incomplete, malformed or too long;
// the registrar answers the REGISTER 400 (or 555 Push Notification Service
// Not Supported for a provider it does not serve, RFC 8599 §5.6).
var ErrBadParams = errors.New("push: invalid push parameters")

// Params are a device's push parameters, from the Contact URI of its
// REGISTER. They stay at the node that serves the device: the token is
// never published.
type Params struct {
	Provider string
	Param    string
	PRID     string
	PURR     string
}

// ParseContact reads the push parameters of a Contact URI. ok is false when
// it has none; an error when it has some but not a valid set (pn-provider
// and pn-prid are needed; RFC 8599 lets a provider go without pn-prid only
// when pn-param carries the address, which no provider hiersip knows does).
func ParseContact(u *sip.Uri) (p Params, ok bool, err error) {
	get := func(name string, max int) (string, error) {
		v, found := u.UriParams.Get(name)
		if !found {
			return "", nil
		}
		ok = true
		s, err := url.PathUnescape(v)
		if err != nil || s == "" || len(s) > max || strings.ContainsAny(s, "\x00\r\n") {
			return "", fmt.Errorf("%w: %s", ErrBadParams, name)
		}
		return s, nil
	}
	var errs []error
	var e error
	p.Provider, e = get(ParamProvider, MaxProvider)
	errs = append(errs, e)
	p.Param, e = get(ParamParam, MaxParam)
	errs = append(errs, e)
	p.PRID, e = get(ParamPRID, MaxPRID)
	errs = append(errs, e)
	p.PURR, e = get(ParamPURR, MaxPURR)
	errs = append(errs, e)
	if err := errors.Join(errs...); err != nil {
		return Params{}, true, err
	}
	if !ok {
		return Params{}, false, nil
	}
	if err := p.Validate(); err != nil {
		return Params{}, true, err
	}
	return p, true, nil
}

// Validate checks that p names a provider and a token, within the bounds.
func (p Params) Validate() error {
	switch {
	case p.Provider == "" || p.PRID == "":
		return fmt.Errorf("%w: %s and %s are required", ErrBadParams, ParamProvider, ParamPRID)
	case len(p.Provider) > MaxProvider || len(p.Param) > MaxParam || len(p.PRID) > MaxPRID || len(p.PURR) > MaxPURR:
		return fmt.Errorf("%w: a value too long", ErrBadParams)
	case strings.ContainsFunc(p.Provider, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
	}):
		return fmt.Errorf("%w: provider %q", ErrBadParams, p.Provider)
	}
	return nil
}

// Strip removes the push parameters from a Contact URI, for the request
// the node forwards to the device: the token is the node's business, no
// hop needs it.
func Strip(u *sip.Uri) {
	for _, n := range []string{ParamProvider, ParamParam, ParamPRID, ParamPURR} {
		u.UriParams.Remove(n)
	}
}
