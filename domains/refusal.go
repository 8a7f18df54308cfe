package domains

import (
	"errors"

	"github.com/libp2p/go-libp2p/core/record"
)

// Reasons a record is refused, for metrics (RefusalReason, the validators'
// OnRefuse hooks).
const (
	ReasonMalformed   = "malformed"   // does not decode, or oversized
	ReasonSignature   = "signature"   // bad signature, wrong signer or owner signature
	ReasonWrongKey    = "wrong_key"   // stored under another key or outside the domain
	ReasonExpired     = "expired"     // expired (or the certificate did)
	ReasonAhead       = "ahead"       // dated, sequenced or expiring too far ahead
	ReasonCertificate = "certificate" // enrolled domain: no valid certificate
	ReasonOtherOwner  = "other_owner" // a binding of another owner than the live one held
	ReasonNoEvidence  = "no_evidence" // a proxy record that does not continue the chain
	ReasonAuthority   = "authority"   // a proxy record of another authority
	ReasonOther       = "other"
)

// RefusalReason classifies a validation error of this package.
func RefusalReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrAhead):
		return ReasonAhead
	case errors.Is(err, ErrWrongAuthority):
		return ReasonAuthority
	case errors.Is(err, ErrNoCert), errors.Is(err, ErrBadCert), errors.Is(err, ErrCertMismatch),
		errors.Is(err, ErrCertExpired), errors.Is(err, ErrCertRevoked):
		return ReasonCertificate
	case errors.Is(err, ErrExpired):
		return ReasonExpired
	case errors.Is(err, ErrWrongSigner), errors.Is(err, ErrBadOwner), errors.Is(err, record.ErrInvalidSignature):
		return ReasonSignature
	case errors.Is(err, ErrWrongKey), errors.Is(err, ErrNotInDomain):
		return ReasonWrongKey
	case errors.Is(err, ErrBadRecord), errors.Is(err, ErrRecordTooBig):
		return ReasonMalformed
	default:
		return ReasonOther
	}
}
