package domains

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/record"
)

// Limits of revocation lists.
const (
	MaxRevocations        = 4096     // serials in one list
	MaxRevocationListSize = 96 << 10 // bytes of a sealed list
)

// RevocationEnvelopeDomain is the libp2p signed-envelope domain of
// revocation lists.
const RevocationEnvelopeDomain = "hiersip-revocations"

// NSRevocation is the key namespace of an enrolled domain's revocation
// list in its domain overlay (key = RevocationResourceID).
const NSRevocation = "hsr"

var revocationCodec = []byte("/hiersip/revocations/1")

func init() { record.RegisterType(&revocationRecord{}) }

// RevocationList names the certificate serials an enrolled domain's
// authority has revoked. The authority signs it; a list with a higher Seq
// replaces the one before (it must repeat the serials it keeps). It is stored
// in the domain overlay under RevocationKey, where any node may re-store it,
// and every node keeps the newest list it has seen (Enrollment).
type RevocationList struct {
	Domain  string
	Seq     uint64
	Issued  time.Time
	Serials []uint64 // sorted, without duplicates
}

type revocationJSON struct {
	Domain  string   `json:"domain"`
	Seq     uint64   `json:"seq"`
	Issued  int64    `json:"issued"`
	Serials []uint64 `json:"serials,omitempty"`
}

type revocationRecord struct{ l RevocationList }

func (r *revocationRecord) Domain() string { return RevocationEnvelopeDomain }
func (r *revocationRecord) Codec() []byte  { return revocationCodec }

func (r *revocationRecord) MarshalRecord() ([]byte, error) {
	return json.Marshal(revocationJSON{Domain: r.l.Domain, Seq: r.l.Seq, Issued: r.l.Issued.UnixMilli(), Serials: r.l.Serials})
}

func (r *revocationRecord) UnmarshalRecord(data []byte) error {
	var j revocationJSON
	if err := decodeJSON(data, MaxRevocationListSize, &j, ErrBadRecord); err != nil {
		return err
	}
	if len(j.Serials) > MaxRevocations {
		return fmt.Errorf("%w: %d revocations, limit %d", ErrBadRecord, len(j.Serials), MaxRevocations)
	}
	r.l = RevocationList{Domain: j.Domain, Seq: j.Seq, Issued: time.UnixMilli(j.Issued), Serials: j.Serials}
	return nil
}

// Revoke returns a copy of l with serials added and Seq increased, to be
// sealed by the authority.
func (l RevocationList) Revoke(now time.Time, serials ...uint64) RevocationList {
	out := l
	out.Serials = append(slices.Clone(l.Serials), serials...)
	slices.Sort(out.Serials)
	out.Serials = slices.Compact(out.Serials)
	out.Seq++
	out.Issued = now
	return out
}

// Has reports whether serial is revoked.
func (l *RevocationList) Has(serial uint64) bool {
	_, ok := slices.BinarySearch(l.Serials, serial)
	return ok
}

// Seal signs the list with the authority's (Ed25519) key.
func (l RevocationList) Seal(authority crypto.PrivKey) ([]byte, error) {
	if err := checkEd25519(authority, ErrBadRecord, "authority key must be Ed25519"); err != nil {
		return nil, err
	}
	if err := ValidateDomain(l.Domain); err != nil {
		return nil, err
	}
	if len(l.Serials) > MaxRevocations {
		return nil, fmt.Errorf("%w: %d revocations, limit %d", ErrRecordTooBig, len(l.Serials), MaxRevocations)
	}
	if !slices.IsSorted(l.Serials) {
		return nil, fmt.Errorf("%w: serials not sorted", ErrBadRecord)
	}
	return sealRecord(&revocationRecord{l}, authority, MaxRevocationListSize)
}

// OpenRevocationList verifies a sealed revocation list's signature and that
// the signer is authority, and returns it.
func OpenRevocationList(data []byte, authority crypto.PubKey) (*RevocationList, error) {
	var r revocationRecord
	if err := openAuthorityRecord(data, &r, MaxRevocationListSize, ErrBadRecord, "revocation list", authority); err != nil {
		return nil, err
	}
	if err := ValidateDomain(r.l.Domain); err != nil {
		return nil, fmt.Errorf("%w: revocation list: %v", ErrBadRecord, err)
	}
	if !slices.IsSorted(r.l.Serials) {
		return nil, fmt.Errorf("%w: revocation list serials not sorted", ErrBadRecord)
	}
	return &r.l, nil
}

// RevocationResourceID is where an enrolled domain's revocation list is
// stored in its domain overlay: SHA-256 of "sip:revocations@<domain>".
func RevocationResourceID(domain string) ResourceID {
	return resourceIDOf("sip:revocations@" + strings.ToLower(domain))
}

// RevocationKey returns the domain-overlay DHT key of domain's revocation list.
func RevocationKey(domain string) string {
	id := RevocationResourceID(domain)
	return "/" + NSRevocation + "/" + string(id[:])
}

// RevocationValidator validates an enrolled domain's revocation list
// records: signed by the authority, of the domain, under RevocationKey. The
// highest sequence number wins. Every valid list it sees is offered to the
// Enrollment, so a node learns a revocation as soon as a list reaches it.
type RevocationValidator struct{ Enrollment *Enrollment }

func (v RevocationValidator) open(key string, value []byte) (*RevocationList, error) {
	e := v.Enrollment
	if e == nil {
		return nil, fmt.Errorf("%w: domain is not enrolled", ErrBadRecord)
	}
	l, err := OpenRevocationList(value, e.authority)
	if err != nil {
		return nil, err
	}
	if l.Domain != e.domain || key != RevocationKey(e.domain) {
		return nil, fmt.Errorf("%w: revocation list of %s", ErrWrongKey, l.Domain)
	}
	return l, nil
}

// Validate implements record.Validator.
func (v RevocationValidator) Validate(key string, value []byte) error {
	if _, err := v.open(key, value); err != nil {
		return err
	}
	_, _ = v.Enrollment.AddRevocationList(value)
	return nil
}

// Select implements record.Validator: the highest sequence number wins;
// ties keep the earlier value.
func (v RevocationValidator) Select(key string, values [][]byte) (int, error) {
	best, bestIdx := uint64(0), -1
	for i, val := range values {
		l, err := v.open(key, val)
		if err != nil {
			continue
		}
		if bestIdx < 0 || l.Seq > best {
			best, bestIdx = l.Seq, i
		}
	}
	if bestIdx < 0 {
		return 0, fmt.Errorf("%w: no valid revocation list among %d values", ErrBadRecord, len(values))
	}
	return bestIdx, nil
}
