package domains

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
)

// Limits of enrollment certificates.
const (
	MaxCertSize        = 1 << 10 // bytes of a sealed certificate
	MaxSubjectUser     = 128     // bytes of a subject's user part (a glob)
	MaxCertificateLife = 5 * 365 * 24 * time.Hour
)

// CertEnvelopeDomain is the libp2p signed-envelope domain of enrollment
// certificates.
const CertEnvelopeDomain = "hiersip-cert"

var certCodec = []byte("/hiersip/cert/1")

func init() { record.RegisterType(&certRecord{}) }

// Errors of enrollment.
var (
	ErrNoCert       = errors.New("domains: no enrollment certificate")
	ErrBadCert      = errors.New("domains: invalid enrollment certificate")
	ErrCertExpired  = errors.New("domains: enrollment certificate expired or not yet valid")
	ErrCertRevoked  = errors.New("domains: enrollment certificate revoked")
	ErrCertMismatch = errors.New("domains: enrollment certificate does not cover the binding")
	ErrBadSubject   = errors.New("domains: invalid certificate subject")
)

// Subject is what a certificate covers: a host and a glob on the user part
// (path.Match syntax: "*", "?", "[a-z]"), e.g. sip:*@bupt.pastry or
// sip:alice@bupt.pastry.
type Subject struct {
	User string // a glob; a plain user name matches only itself
	Host string // lower-cased, matched exactly
}

// ParseSubject parses "sip:user@host", "user@host" or "sips:...", where user
// may be a glob. It returns an error wrapping ErrBadSubject.
func ParseSubject(s string) (Subject, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxURILength {
		return Subject{}, fmt.Errorf("%w: %d bytes, limit %d", ErrBadSubject, len(s), MaxURILength)
	}
	if l := strings.ToLower(s); strings.HasPrefix(l, "sip:") {
		s = s[4:]
	} else if strings.HasPrefix(l, "sips:") {
		s = s[5:]
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return Subject{}, fmt.Errorf("%w: %q: want user@host", ErrBadSubject, s)
	}
	sub := Subject{User: s[:i], Host: strings.ToLower(s[i+1:])}
	if sub.User == "" || len(sub.User) > MaxSubjectUser || strings.ContainsAny(sub.User, "@:;<> \t\r\n\x00") {
		return Subject{}, fmt.Errorf("%w: user part %q", ErrBadSubject, sub.User)
	}
	if _, err := path.Match(sub.User, ""); err != nil {
		return Subject{}, fmt.Errorf("%w: user glob %q: %v", ErrBadSubject, sub.User, err)
	}
	if err := ValidateDomain(sub.Host); err != nil {
		return Subject{}, fmt.Errorf("%w: host: %v", ErrBadSubject, err)
	}
	return sub, nil
}

// String returns the canonical form "sip:<user>@<host>".
func (s Subject) String() string { return "sip:" + s.User + "@" + s.Host }

// Matches reports whether a falls under the subject: same host, user
// matching the glob (sip and sips alike).
func (s Subject) Matches(a AOR) bool {
	if a.Host != s.Host {
		return false
	}
	ok, err := path.Match(s.User, a.User)
	return err == nil && ok
}

// Certificate binds a subject (an AOR or a user glob) of an enrolled domain
// to a node's peer ID until NotAfter. The domain's authority signs it (see
// Seal); nodes put it into their bindings (Binding.Cert) and the overlay's
// BindingValidator rejects bindings of an enrolled domain without a valid
// one.
type Certificate struct {
	Domain    string  // the enrolled domain
	Subject   Subject // the AORs it covers
	Peer      peer.ID // the node allowed to register them
	Serial    uint64  // unique per authority; what a revocation list names
	NotBefore time.Time
	NotAfter  time.Time
}

type certJSON struct {
	Domain    string `json:"domain"`
	Subject   string `json:"subject"`
	Peer      string `json:"peer"`
	Serial    uint64 `json:"serial"`
	NotBefore int64  `json:"nbf"`
	NotAfter  int64  `json:"exp"`
}

func (c *Certificate) marshal() ([]byte, error) {
	return json.Marshal(certJSON{
		Domain: c.Domain, Subject: c.Subject.String(), Peer: c.Peer.String(), Serial: c.Serial,
		NotBefore: c.NotBefore.UnixMilli(), NotAfter: c.NotAfter.UnixMilli(),
	})
}

func (c *Certificate) unmarshal(data []byte) error {
	var j certJSON
	if err := decodeJSON(data, MaxCertSize, &j, ErrBadCert); err != nil {
		return err
	}
	sub, err := ParseSubject(j.Subject)
	if err != nil {
		return err
	}
	p, err := peer.Decode(j.Peer)
	if err != nil {
		return fmt.Errorf("%w: peer: %v", ErrBadCert, err)
	}
	*c = Certificate{
		Domain: j.Domain, Subject: sub, Peer: p, Serial: j.Serial,
		NotBefore: time.UnixMilli(j.NotBefore), NotAfter: time.UnixMilli(j.NotAfter),
	}
	return nil
}

// check validates the certificate's own fields.
func (c *Certificate) check() error {
	if err := ValidateDomain(c.Domain); err != nil {
		return fmt.Errorf("%w: %v", ErrBadCert, err)
	}
	if !hostInDomain(c.Subject.Host, c.Domain) {
		return fmt.Errorf("%w: subject %s is not in domain %s", ErrBadCert, c.Subject, c.Domain)
	}
	if _, err := peer.Decode(c.Peer.String()); c.Peer == "" || err != nil {
		return fmt.Errorf("%w: invalid peer ID", ErrBadCert)
	}
	if !c.NotAfter.After(c.NotBefore) || c.NotAfter.Sub(c.NotBefore) > MaxCertificateLife {
		return fmt.Errorf("%w: validity %s – %s", ErrBadCert, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// Seal signs the certificate with the authority's key and returns the
// marshalled envelope. The authority key must be Ed25519 (it keeps
// certificates small).
func (c *Certificate) Seal(authority crypto.PrivKey) ([]byte, error) {
	if err := checkEd25519(authority, ErrBadCert, "authority key must be Ed25519"); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return sealRecord(&certRecord{*c}, authority, MaxCertSize)
}

// OpenCertificate verifies a sealed certificate's signature and that the
// signer is authority, and returns it. It does not check validity times,
// revocation or what it covers: Verify does.
func OpenCertificate(data []byte, authority crypto.PubKey) (*Certificate, error) {
	if len(data) == 0 {
		return nil, ErrNoCert
	}
	var cr certRecord
	if err := openAuthorityRecord(data, &cr, MaxCertSize, ErrBadCert, "certificate", authority); err != nil {
		return nil, err
	}
	if err := cr.c.check(); err != nil {
		return nil, err
	}
	return &cr.c, nil
}

// Covers reports whether the certificate is for domain, peer p and an AOR
// matching its subject.
func (c *Certificate) Covers(domain string, a AOR, p peer.ID) bool {
	return c.Domain == domain && c.Peer == p && c.Subject.Matches(a)
}

// Verify checks that the certificate is for domain, lets peer p register a,
// and is valid at now (MaxClockSkew of tolerance).
func (c *Certificate) Verify(domain string, a AOR, p peer.ID, now time.Time) error {
	if !c.Covers(domain, a, p) {
		return fmt.Errorf("%w: certificate %d is for %s at %s in %s, not %s at %s in %s",
			ErrCertMismatch, c.Serial, c.Subject, c.Peer, c.Domain, a, p, domain)
	}
	if now.Before(c.NotBefore.Add(-MaxClockSkew)) || !now.Before(c.NotAfter) {
		return fmt.Errorf("%w: certificate %d valid %s – %s", ErrCertExpired, c.Serial,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// certRecord adapts Certificate to record.Record, whose Domain method
// would clash with the Domain field.
type certRecord struct{ c Certificate }

func (r *certRecord) Domain() string                    { return CertEnvelopeDomain }
func (r *certRecord) Codec() []byte                     { return certCodec }
func (r *certRecord) MarshalRecord() ([]byte, error)    { return r.c.marshal() }
func (r *certRecord) UnmarshalRecord(data []byte) error { return r.c.unmarshal(data) }
