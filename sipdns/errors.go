package sipdns

import (
	"errors"
	"fmt"
	"net"
)

// Errors. Every error Resolve returns wraps one of them; StatusCode maps them
// to the SIP response a proxy should send when it cannot route a request.
var (
	// ErrNXDomain: the DNS said the domain does not exist (NXDOMAIN). A
	// proxy answers 604 Does Not Exist Anywhere, at once.
	ErrNXDomain = errors.New("sipdns: domain does not exist")
	// ErrNoTargets: the domain exists but has no SIP server reachable with
	// the transports this client supports (no usable NAPTR, SRV or address
	// records). A proxy answers 404.
	ErrNoTargets = errors.New("sipdns: no SIP server for domain")
	// ErrUnavailable: the DNS could not be asked or failed (timeout,
	// SERVFAIL, REFUSED, a malformed answer). Temporary: a proxy answers 503.
	ErrUnavailable = errors.New("sipdns: DNS unavailable")
	// ErrDenied: the policy refuses the domain or every address it resolved
	// to. A proxy answers 403.
	ErrDenied = errors.New("sipdns: refused by policy")
	// ErrBadURI: not a sip: or sips: URI, or one that cannot be routed
	// (sips: with transport=udp, an empty host). A proxy answers 416 or 400.
	ErrBadURI = errors.New("sipdns: bad URI")
	// ErrNoTransport: the URI asks for a transport this client does not
	// support (transport=sctp, or tls when TLS is off).
	ErrNoTransport = errors.New("sipdns: transport not supported")
	// ErrConfig: an invalid option.
	ErrConfig = errors.New("sipdns: invalid configuration")
	// ErrClosed is returned by a second Close and by Resolve after Close.
	ErrClosed = fmt.Errorf("sipdns: resolver closed: %w", net.ErrClosed)
)

// StatusCode returns the SIP status code and reason phrase a proxy should
// answer with when Resolve failed with err: 604 for a domain that does not
// exist, 404 for one with no SIP server, 503 when the DNS failed, 403 for a
// refused domain, 416 for a URI scheme that is not sip/sips, 400 for another
// bad URI, 503 for an unsupported transport, 500 otherwise.
func StatusCode(err error) (int, string) {
	switch {
	case err == nil:
		return 200, "OK"
	case errors.Is(err, ErrNXDomain):
		return 604, "Does Not Exist Anywhere"
	case errors.Is(err, ErrNoTargets):
		return 404, "Not Found"
	case errors.Is(err, ErrDenied):
		return 403, "Forbidden"
	case errors.Is(err, errScheme):
		return 416, "Unsupported URI Scheme"
	case errors.Is(err, ErrBadURI):
		return 400, "Bad Request"
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrNoTransport):
		return 503, "Service Unavailable"
	default:
		return 500, "Server Internal Error"
	}
}

// errScheme is ErrBadURI for a scheme other than sip/sips.
var errScheme = fmt.Errorf("%w: scheme is not sip or sips", ErrBadURI)
