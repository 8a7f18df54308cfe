package domains

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// MaxURILength bounds the length of a SIP URI accepted as an AOR. RFC 3261
// sets no limit; 256 bytes is far above any real AOR and keeps records small.
const MaxURILength = 256

// GlobalName is the reserved name of the global overlay; no domain may use it.
const GlobalName = "global"

// Errors returned by the naming functions. They are wrapped with detail; test
// them with errors.Is.
var (
	ErrEmptyURI     = errors.New("domains: empty URI")
	ErrURITooLong   = errors.New("domains: URI too long")
	ErrBadURI       = errors.New("domains: malformed URI")
	ErrScheme       = errors.New("domains: scheme is not sip or sips")
	ErrNoHost       = errors.New("domains: URI has no host")
	ErrNoUser       = errors.New("domains: URI has no user part")
	ErrBadDomain    = errors.New("domains: invalid domain name")
	ErrNotInDomain  = errors.New("domains: AOR is not in the domain")
	ErrReservedName = errors.New("domains: reserved domain name")
)

// ResourceID is the SHA-256 of a canonical URI: the draft's User-Resource-ID
// or Overlay-Resource-ID (draft §4.3).
type ResourceID [sha256.Size]byte

// String returns the ID in lower-case hex.
func (id ResourceID) String() string { return fmt.Sprintf("%x", id[:]) }

// AOR is a canonical SIP address of record: scheme, user (case kept) and
// lower-cased host, without port, parameters or headers (DESIGN §2).
type AOR struct {
	Scheme string // "sip" or "sips"
	User   string
	Host   string
}

// ParseAOR parses s (a bare URI, or a name-addr such as `"Bob" <sip:bob@x>`)
// and returns its canonical AOR. It returns an error wrapping ErrEmptyURI,
// ErrURITooLong, ErrBadURI, ErrScheme, ErrNoHost or ErrNoUser.
func ParseAOR(s string) (AOR, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return AOR{}, ErrEmptyURI
	}
	if len(s) > MaxURILength {
		return AOR{}, fmt.Errorf("%w: %d bytes, limit %d", ErrURITooLong, len(s), MaxURILength)
	}
	if i := strings.IndexByte(s, '<'); i >= 0 {
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			return AOR{}, fmt.Errorf("%w: %q: unclosed '<'", ErrBadURI, s)
		}
		s = s[i+1 : i+j]
	}
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		return AOR{}, fmt.Errorf("%w: %q: %v", ErrBadURI, s, err)
	}
	return AORFromURI(&u)
}

// AORFromURI returns the canonical AOR of a parsed URI.
func AORFromURI(u *sip.Uri) (AOR, error) {
	scheme := strings.ToLower(u.Scheme)
	if scheme == "" {
		scheme = "sip"
	}
	if scheme != "sip" && scheme != "sips" {
		return AOR{}, fmt.Errorf("%w: %q", ErrScheme, u.Scheme)
	}
	host := strings.ToLower(strings.TrimSuffix(u.Host, "."))
	if host == "" || u.Wildcard {
		return AOR{}, ErrNoHost
	}
	if u.User == "" {
		return AOR{}, fmt.Errorf("%w: host %q", ErrNoUser, host)
	}
	a := AOR{Scheme: scheme, User: u.User, Host: host}
	if n := len(a.String()); n > MaxURILength {
		return AOR{}, fmt.Errorf("%w: %d bytes, limit %d", ErrURITooLong, n, MaxURILength)
	}
	return a, nil
}

// String returns the canonical URI, e.g. "sip:bob@bupt.pastry".
func (a AOR) String() string {
	if a.User == "" {
		return a.Scheme + ":" + a.Host
	}
	return a.Scheme + ":" + a.User + "@" + a.Host
}

// URI returns the AOR as a sipgo URI.
func (a AOR) URI() sip.Uri {
	return sip.Uri{Scheme: a.Scheme, User: a.User, Host: a.Host}
}

// ResourceID returns the draft's User-Resource-ID: SHA-256 of the canonical URI.
func (a AOR) ResourceID() ResourceID { return resourceIDOf(a.String()) }

func resourceIDOf(uri string) ResourceID { return sha256.Sum256([]byte(uri)) }

// InDomain reports whether the AOR's host is domain or a sub-domain of it.
func (a AOR) InDomain(domain string) bool { return hostInDomain(a.Host, domain) }

func hostInDomain(host, domain string) bool {
	return host == domain || (len(host) > len(domain) && strings.HasSuffix(host, domain) && host[len(host)-len(domain)-1] == '.')
}

// ValidateDomain checks that name is a usable domain name: lower-case DNS
// labels of letters, digits and hyphens, at most 63 bytes each and 253 in
// all, and not the reserved name "global".
func ValidateDomain(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadDomain)
	}
	if len(name) > 253 {
		return fmt.Errorf("%w: %d bytes, limit 253", ErrBadDomain, len(name))
	}
	if name == GlobalName {
		return fmt.Errorf("%w: %q names the global overlay", ErrReservedName, name)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%w: %q: each label must have 1 to 63 bytes", ErrBadDomain, name)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%w: %q: a label may not start or end with '-'", ErrBadDomain, name)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%w: %q: only lower-case letters, digits, '-' and '.' are allowed", ErrBadDomain, name)
			}
		}
	}
	return nil
}

// DomainOf returns the domain an AOR host belongs to: the longest name in
// known that equals host or of which host is a sub-domain (DESIGN §2). When
// no known name matches, it returns the host's top-level label (draft §5: the
// top-level label names the overlay) and false.
func DomainOf(host string, known []string) (string, bool) {
	host = strings.ToLower(host)
	best := ""
	for _, d := range known {
		if len(d) > len(best) && hostInDomain(host, d) {
			best = d
		}
	}
	if best != "" {
		return best, true
	}
	if i := strings.LastIndexByte(host, '.'); i >= 0 {
		return host[i+1:], false
	}
	return host, false
}

// DomainCandidates returns the suffixes of host that could name its domain,
// longest first: "a.b.c" → ["a.b.c", "b.c", "c"]. A node that does not know
// the target domain tries them in order in the global overlay.
func DomainCandidates(host string) []string {
	host = strings.ToLower(host)
	var out []string
	for {
		out = append(out, host)
		i := strings.IndexByte(host, '.')
		if i < 0 {
			return out
		}
		host = host[i+1:]
	}
}

// OverlayURI returns the draft's P2P-SIP Overlay URI of a domain:
// "sip:overlay@" + domain.
func OverlayURI(domain string) string { return "sip:overlay@" + strings.ToLower(domain) }

// OverlayResourceID returns the draft's Overlay-Resource-ID of a domain:
// SHA-256 of its overlay URI.
func OverlayResourceID(domain string) ResourceID {
	return resourceIDOf(OverlayURI(domain))
}
