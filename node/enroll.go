package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/libp2p/go-libp2p/core/crypto"
	pb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// DefaultRevocationRefresh is how often a node of an enrolled domain looks
// the domain's revocation list up.
const DefaultRevocationRefresh = time.Minute

// ErrNoCertificate: the node of an enrolled domain holds no valid (issued
// to it, covering the AOR, unexpired, unrevoked) certificate for an AOR. It
// matches sipbridge.ErrForbidden, so the SIP bridge answers 403.
var ErrNoCertificate = errors.New("node: no valid enrollment certificate")

// EnrollmentConfig makes the node's domain an enrolled domain (package
// domains, "Enrolled domains"): only nodes holding a certificate of the
// domain's authority can register AORs.
type EnrollmentConfig struct {
	// Authority is the domain authority's Ed25519 public key. Every node of
	// an enrolled domain must be configured with the same key.
	Authority crypto.PubKey
	// Certificates are the sealed certificates issued to this node (files
	// written by "hiersip authority issue"; PEM or raw).
	Certificates [][]byte
	// RevocationList is an optional sealed revocation list to start with;
	// the node stores it in the domain overlay. Newer lists found in the
	// overlay replace it.
	RevocationList []byte
	// RefreshInterval is how often the node looks the revocation list up
	// (default DefaultRevocationRefresh).
	RefreshInterval time.Duration
}

// enrollment is the enrollment of the node's domain: the domain's state
// (its authority and revocation list) and the node's certificates. A nil
// *enrollment is an open domain.
type enrollment struct {
	state  *domains.Enrollment
	certs  [][]byte
	domain string
	self   peer.ID
	clock  clock.Clock
}

// validate checks the enrollment config for domain, naming the field at fault.
func (c *EnrollmentConfig) validate(domain string) error {
	if c.Authority == nil {
		return &ConfigError{"enrollment.authority", errors.New("missing (an enrolled domain needs its authority's public key)")}
	}
	if c.Authority.Type() != pb.KeyType_Ed25519 {
		return &ConfigError{"enrollment.authority", errors.New("not an Ed25519 key")}
	}
	for i, raw := range c.Certificates {
		data, err := domains.DecodePEM(raw, domains.PEMCertificate)
		if err != nil {
			return &ConfigError{fmt.Sprintf("enrollment.certificates[%d]", i), err}
		}
		cert, err := domains.OpenCertificate(data, c.Authority)
		if err != nil {
			return &ConfigError{fmt.Sprintf("enrollment.certificates[%d]", i), err}
		}
		if cert.Domain != domain {
			return &ConfigError{fmt.Sprintf("enrollment.certificates[%d]", i), fmt.Errorf("issued for domain %s, node is in %s", cert.Domain, domain)}
		}
		c.Certificates[i] = data
	}
	if c.RevocationList != nil {
		data, err := domains.DecodePEM(c.RevocationList, domains.PEMRevocationList)
		if err != nil {
			return &ConfigError{"enrollment.revocation_list", err}
		}
		if _, err := domains.OpenRevocationList(data, c.Authority); err != nil {
			return &ConfigError{"enrollment.revocation_list", err}
		}
		c.RevocationList = data
	}
	switch {
	case c.RefreshInterval == 0:
		c.RefreshInterval = DefaultRevocationRefresh
	case c.RefreshInterval < 100*time.Millisecond:
		return &ConfigError{"enrollment.refresh_interval", fmt.Errorf("%v is below the minimum of 100ms", c.RefreshInterval)}
	}
	return nil
}

// newEnrollment builds the enrollment of a node with peer ID self in domain
// from a validated config.
func newEnrollment(c *EnrollmentConfig, domain string, self peer.ID, clk clock.Clock) (*enrollment, error) {
	st, err := domains.NewEnrollment(domain, c.Authority)
	if err != nil {
		return nil, &ConfigError{"enrollment.authority", err}
	}
	if c.RevocationList != nil {
		if _, err := st.AddRevocationList(c.RevocationList); err != nil {
			return nil, &ConfigError{"enrollment.revocation_list", err}
		}
	}
	e := &enrollment{state: st, domain: domain, self: self, clock: clk}
	for i, data := range c.Certificates {
		cert, _ := domains.OpenCertificate(data, c.Authority)
		if cert.Peer != self {
			return nil, &ConfigError{fmt.Sprintf("enrollment.certificates[%d]", i), fmt.Errorf("issued to peer %s, this node is %s", cert.Peer, self)}
		}
		e.certs = append(e.certs, data)
	}
	return e, nil
}

// Enrollment returns the enrollment state of the node's domain, nil for an
// open domain.
func (n *Node) Enrollment() *domains.Enrollment {
	if n.enroll == nil {
		return nil
	}
	return n.enroll.state
}

// certFor returns the certificate the node attaches to aor's binding: nil in
// an open domain; in an enrolled domain the first valid one covering aor,
// or an error matching ErrNoCertificate and sipbridge.ErrForbidden.
func (e *enrollment) certFor(aor domains.AOR) ([]byte, error) {
	if e == nil {
		return nil, nil
	}
	now := e.clock.Now()
	why := "this node holds no enrollment certificate for " + aor.String()
	for _, data := range e.certs {
		_, err := e.state.VerifyCert(data, aor, e.self, now)
		switch {
		case err == nil:
			return data, nil
		case errors.Is(err, domains.ErrCertRevoked):
			why = "the enrollment certificate for " + aor.String() + " is revoked"
		case errors.Is(err, domains.ErrCertExpired):
			why = "the enrollment certificate for " + aor.String() + " is expired or not yet valid"
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrNoCertificate, &sipbridge.ForbiddenError{Reason: why})
}

// memberCert returns a certificate of this node that is valid now and not
// revoked, whatever its subject: what makes it a certified member (election
// messages, proxy records). Nil in an open domain or without one.
func (e *enrollment) memberCert() []byte {
	if e == nil {
		return nil
	}
	for _, data := range e.certs {
		if e.verifyMember(e.self, data) == nil {
			return data
		}
	}
	return nil
}

// verifyMember checks that cert is a certificate of the domain's authority
// issued to p for this domain, valid now and not revoked.
func (e *enrollment) verifyMember(p peer.ID, cert []byte) error {
	c, err := domains.OpenCertificate(cert, e.state.Authority())
	if err != nil {
		return err
	}
	now := e.clock.Now()
	switch {
	case c.Domain != e.domain || c.Peer != p:
		return fmt.Errorf("%w: certificate %d is for %s in %s", domains.ErrCertMismatch, c.Serial, c.Peer, c.Domain)
	case now.Before(c.NotBefore.Add(-domains.MaxClockSkew)) || !now.Before(c.NotAfter):
		return fmt.Errorf("%w: certificate %d", domains.ErrCertExpired, c.Serial)
	case e.state.Revoked(c.Serial):
		return fmt.Errorf("%w: certificate %d", domains.ErrCertRevoked, c.Serial)
	}
	return nil
}

// PublishRevocationList verifies a sealed revocation list of the domain's
// authority (PEM or raw), keeps it if it is newer than the one the node
// holds, and stores the newest list in the domain overlay, where the other
// nodes' validators learn it. The node re-stores it with its bindings.
func (n *Node) PublishRevocationList(ctx context.Context, list []byte) error {
	if n.enroll == nil {
		return domains.ErrNotEnrolled
	}
	data, err := domains.DecodePEM(list, domains.PEMRevocationList)
	if err != nil {
		return err
	}
	return n.domain.PutRevocationList(ctx, data)
}

// refreshRevocations looks the revocation list up and re-stores the newest
// one held, so that it survives the nodes that first stored it.
func (n *Node) refreshRevocations(store bool) {
	if n.enroll == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LookupTimeout)
	defer cancel()
	changed, err := n.domain.FetchRevocationList(ctx)
	if err != nil && n.ctx.Err() == nil {
		n.log.Debug("revocation list lookup failed", "err", err)
	}
	if changed {
		_, seq := n.enroll.state.RevocationList()
		n.log.Info("new revocation list", "seq", seq)
	}
	if store {
		if err := n.domain.PutRevocationList(ctx, nil); err != nil && n.ctx.Err() == nil {
			n.log.Debug("re-store revocation list failed", "err", err)
		}
	}
}
