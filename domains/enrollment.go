package domains

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	pb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Enrollment is a node's view of an enrolled domain: the authority's public
// key and the newest revocation list the node has seen. It is safe for
// concurrent use. Give it to the domain overlay with WithEnrollment; the
// overlay's validators consult it and feed it every newer list they see.
type Enrollment struct {
	domain    string
	authority crypto.PubKey

	mu   sync.RWMutex
	list RevocationList
	raw  []byte
}

// NewEnrollment returns the enrollment state of domain with the authority's
// public key (Ed25519).
func NewEnrollment(domain string, authority crypto.PubKey) (*Enrollment, error) {
	if err := ValidateDomain(domain); err != nil {
		return nil, err
	}
	if authority == nil || authority.Type() != pb.KeyType_Ed25519 {
		return nil, fmt.Errorf("%w: authority key must be Ed25519", ErrBadCert)
	}
	return &Enrollment{domain: domain, authority: authority, list: RevocationList{Domain: domain}}, nil
}

// Domain returns the enrolled domain.
func (e *Enrollment) Domain() string { return e.domain }

// Authority returns the authority's public key.
func (e *Enrollment) Authority() crypto.PubKey { return e.authority }

// Revoked reports whether serial is on the newest revocation list seen.
func (e *Enrollment) Revoked(serial uint64) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.list.Has(serial)
}

// RevocationList returns the newest sealed revocation list seen (nil if
// none) and its sequence number.
func (e *Enrollment) RevocationList() ([]byte, uint64) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.raw, e.list.Seq
}

// AddRevocationList verifies a sealed list and keeps it if it is newer than
// the one held. It reports whether it replaced the held list.
func (e *Enrollment) AddRevocationList(data []byte) (bool, error) {
	l, err := OpenRevocationList(data, e.authority)
	if err != nil {
		return false, err
	}
	if l.Domain != e.domain {
		return false, fmt.Errorf("%w: revocation list of %s in %s", ErrNotInDomain, l.Domain, e.domain)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if l.Seq <= e.list.Seq && e.raw != nil {
		return false, nil
	}
	e.list, e.raw = *l, bytes.Clone(data)
	return true, nil
}

// Verify checks that b carries a certificate of this domain's authority that
// covers b's AOR and peer, is valid at now and not revoked, and returns it.
// Errors wrap ErrNoCert, ErrBadCert, ErrCertMismatch, ErrCertExpired or
// ErrCertRevoked.
func (e *Enrollment) Verify(b *Binding, now time.Time) (*Certificate, error) {
	if len(b.Cert) == 0 {
		return nil, fmt.Errorf("%w: %s is in enrolled domain %s", ErrNoCert, b.AOR, e.domain)
	}
	aor, err := ParseAOR(b.AOR)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	return e.VerifyCert(b.Cert, aor, b.Peer, now)
}

// VerifyCert checks a sealed certificate for aor and peer p at now, as
// Verify does for a binding.
func (e *Enrollment) VerifyCert(cert []byte, aor AOR, p peer.ID, now time.Time) (*Certificate, error) {
	c, err := OpenCertificate(cert, e.authority)
	if err != nil {
		return nil, err
	}
	if err := c.Verify(e.domain, aor, p, now); err != nil {
		return nil, err
	}
	if e.Revoked(c.Serial) {
		return nil, fmt.Errorf("%w: serial %d (%s)", ErrCertRevoked, c.Serial, c.Subject)
	}
	return c, nil
}
