package domains

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Key namespaces of hiersip's records. A DHT key is "/<namespace>/<id>" where
// id is the raw 32-byte resource ID.
const (
	NSBinding    = "hsu" // user bindings, domain overlay, key = User-Resource-ID
	NSLocalProxy = "hsl" // the domain's proxies, domain overlay, key = LocalProxyResourceID
	NSOverlay    = "hso" // the domain's proxies, global overlay, key = Overlay-Resource-ID
)

// BindingKey returns the domain-overlay DHT key of an AOR's binding.
func BindingKey(a AOR) string { id := a.ResourceID(); return "/" + NSBinding + "/" + string(id[:]) }

// BindingValidator validates binding records of one domain. It implements
// record.Validator (github.com/libp2p/go-libp2p-record).
//
// A value is valid when it is a libp2p signed envelope of a Binding, signed by
// the key of the peer it names (and by its owner's key, if it names one),
// stored under Hash(AOR), for an AOR inside the domain, not expired, expiring
// at most MaxBindingLifetime ahead, created and sequenced at most
// MaxClockSkew ahead of the clock, and within the size limits. In an enrolled
// domain (Enrollment set) it must also carry a certificate of the domain's
// authority that covers its AOR and peer, is valid now and is not on the
// newest revocation list seen.
type BindingValidator struct {
	Domain     string
	Now        func() time.Time // nil: time.Now
	Enrollment *Enrollment      // nil: an open domain (first come, first served)
	// OnConflict, if set, is called with the key when Select sees live
	// bindings of different owners, neither of which may replace the other.
	OnConflict func(key string)
	// OnRefuse, if set, is called with a reason (RefusalReason) for every
	// value that fails validation, and with ReasonOtherOwner for every
	// conflict of owners Select sees.
	OnRefuse func(reason string)
}

func (v BindingValidator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Validate implements record.Validator.
func (v BindingValidator) Validate(key string, value []byte) error {
	_, err := v.open(key, value)
	if err != nil && v.OnRefuse != nil {
		v.OnRefuse(RefusalReason(err))
	}
	return err
}

func (v BindingValidator) open(key string, value []byte) (*Binding, error) {
	b, err := OpenBinding(value)
	if err != nil {
		return nil, err
	}
	aor, err := ParseAOR(b.AOR)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if aor.String() != b.AOR {
		return nil, fmt.Errorf("%w: AOR %q is not canonical", ErrBadRecord, b.AOR)
	}
	if key != BindingKey(aor) {
		return nil, fmt.Errorf("%w: %s", ErrWrongKey, b.AOR)
	}
	if !aor.InDomain(v.Domain) {
		return nil, fmt.Errorf("%w: %s not in %s", ErrNotInDomain, b.AOR, v.Domain)
	}
	now := v.now()
	if !now.Before(b.Expires) {
		return nil, fmt.Errorf("%w: %s expired at %s", ErrExpired, b.AOR, b.Expires.UTC().Format(time.RFC3339))
	}
	ahead := now.Add(MaxClockSkew)
	if b.Expires.After(ahead.Add(MaxBindingLifetime)) {
		return nil, fmt.Errorf("%w: %w: %s expires too far ahead", ErrBadRecord, ErrAhead, b.AOR)
	}
	if b.Created.After(ahead) {
		return nil, fmt.Errorf("%w: %w: %s created in the future", ErrBadRecord, ErrAhead, b.AOR)
	}
	if b.Seq > SeqAt(ahead) {
		return nil, fmt.Errorf("%w: %w: %s sequence number %d is ahead of the clock", ErrBadRecord, ErrAhead, b.AOR, b.Seq)
	}
	if v.Enrollment != nil {
		if _, err := v.Enrollment.VerifyCert(b.Cert, aor, b.Peer, now); err != nil {
			return nil, fmt.Errorf("binding of %s: %w", b.AOR, err)
		}
	}
	return b, nil
}

// SeqAt returns the sequence number that time t stands for: its Unix time
// in microseconds. Bindings and election messages number their versions so;
// a validator refuses one more than MaxClockSkew ahead of its clock.
func SeqAt(t time.Time) uint64 {
	if us := t.UnixMicro(); us > 0 {
		return uint64(us)
	}
	return 0
}

// owner returns the owner of b as this validator sees it: in an enrolled
// domain every certified claimant is the same owner (the authority).
func (v BindingValidator) owner(b *Binding) string {
	if v.Enrollment != nil {
		return "certified"
	}
	return b.OwnerID()
}

// supersedes reports whether binding a replaces binding b: a newer binding
// of the same owner, or a live binding of another owner where b is a
// tombstone.
func (v BindingValidator) supersedes(a, b *Binding, now time.Time) bool {
	if v.owner(a) == v.owner(b) {
		return a.Seq > b.Seq
	}
	return a.Live(now) && !b.Live(now)
}

// Select implements record.Validator. A value replaces the one after it
// only if it supersedes it: a higher sequence number of the same owner (so a
// tombstone with a higher sequence number wins over the bindings before
// it), or a live binding of another owner in place of a tombstone. Nothing
// else, whatever its times or sequence number: the later value is kept. A
// storing node gets [incoming, stored] (kad-dht, DESIGN §5), so it keeps
// what it holds against a different owner (first come, first served while
// the binding lives). A lookup gets [best so far, next answer] in arrival
// order; when those are live bindings of different owners Select calls
// OnConflict, and the overlay settles the conflict by asking the key's
// closest storers (Overlay.GetBinding).
func (v BindingValidator) Select(key string, values [][]byte) (int, error) {
	now := v.now()
	bs := make([]*Binding, len(values))
	for i, val := range values {
		if b, err := v.open(key, val); err == nil {
			bs[i] = b
		}
	}
	best := selectBest(len(values), func(i int) bool { return bs[i] != nil },
		func(i, j int) bool { return v.supersedes(bs[i], bs[j], now) })
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid binding among %d values", ErrBadRecord, len(values))
	}
	for i, b := range bs {
		if b == nil || i == best || bytes.Equal(values[i], values[best]) {
			continue
		}
		if v.owner(b) != v.owner(bs[best]) && b.Live(now) && bs[best].Live(now) {
			if v.OnConflict != nil {
				v.OnConflict(key)
			}
			if v.OnRefuse != nil {
				v.OnRefuse(ReasonOtherOwner)
			}
		}
	}
	return best, nil
}

// selectBest returns the index of the value Select picks among n values:
// start from the last valid one (the stored value, at a storing node) and
// move to any value that supersedes the current pick, until none does. It
// returns -1 when no value is valid.
func selectBest(n int, valid func(int) bool, supersedes func(a, b int) bool) int {
	best := -1
	for i := n - 1; i >= 0; i-- {
		if valid(i) {
			best = i
			break
		}
	}
	if best < 0 {
		return -1
	}
	for range n { // at most n moves: supersession is a strict order per owner
		moved := false
		for i := range n {
			if i != best && valid(i) && supersedes(i, best) && !supersedes(best, i) {
				best, moved = i, true
			}
		}
		if !moved {
			break
		}
	}
	return best
}

// LocalProxyResourceID returns the domain-overlay resource ID under which a
// domain's proxies publish themselves to the domain's members (draft Figure 3
// F1/F2): SHA-256 of "sip:proxy@<domain>".
func LocalProxyResourceID(domain string) ResourceID {
	return resourceIDOf("sip:proxy@" + strings.ToLower(domain))
}

// ProxyKey returns the DHT key of a domain's proxy record: in the global
// overlay (global true) under its Overlay-Resource-ID, in the domain overlay
// under its LocalProxyResourceID.
func ProxyKey(domain string, global bool) string {
	if global {
		id := OverlayResourceID(domain)
		return "/" + NSOverlay + "/" + string(id[:])
	}
	id := LocalProxyResourceID(domain)
	return "/" + NSLocalProxy + "/" + string(id[:])
}

// ProxyValidator validates proxy records. In a domain overlay it accepts only
// records of that domain (Domain set); in the global overlay (Global) it
// accepts any valid domain's record under that domain's key.
//
// A record is valid when it is signed by a listed proxy (and elector),
// under its domain's key, not expired, expiring at most MaxProxyLifetime
// ahead, with an epoch of at most MaxEpoch, and, when it names an authority
// (an enrolled domain), with a certificate of that authority issued to its
// signer for its domain and valid now. For a domain whose authority the
// validator knows (Authorities, or Enrollment for the domain overlay's own),
// the record must name that authority, and its certificate must not be
// revoked (Enrollment).
type ProxyValidator struct {
	Domain string
	Global bool
	Now    func() time.Time
	// Enrollment is the domain overlay's enrollment (nil: open domain).
	Enrollment *Enrollment
	// Authorities are the authorities the validator knows, by domain.
	Authorities map[string]crypto.PubKey
	// OnConflict and OnRefuse as in BindingValidator; OnRefuse gets
	// ReasonNoEvidence for a record that does not continue the chain of the
	// one it competes with.
	OnConflict func(key string)
	OnRefuse   func(reason string)
}

// Validate implements record.Validator.
func (v ProxyValidator) Validate(key string, value []byte) error {
	_, err := v.open(key, value)
	if err != nil && v.OnRefuse != nil {
		v.OnRefuse(RefusalReason(err))
	}
	return err
}

func (v ProxyValidator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v ProxyValidator) authority(domain string) crypto.PubKey {
	if e := v.Enrollment; e != nil && e.Domain() == domain {
		return e.Authority()
	}
	return v.Authorities[domain]
}

func (v ProxyValidator) open(key string, value []byte) (*ProxyRecord, error) {
	r, err := OpenProxyRecord(value)
	if err != nil {
		return nil, err
	}
	if err := ValidateDomain(r.Domain); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if !v.Global && r.Domain != v.Domain {
		return nil, fmt.Errorf("%w: proxy record of %s in %s", ErrNotInDomain, r.Domain, v.Domain)
	}
	if key != ProxyKey(r.Domain, v.Global) {
		return nil, fmt.Errorf("%w: proxy record of %s", ErrWrongKey, r.Domain)
	}
	now := v.now()
	if !now.Before(r.Expires) {
		return nil, fmt.Errorf("%w: proxy record of %s", ErrExpired, r.Domain)
	}
	if r.Expires.After(now.Add(MaxProxyLifetime + MaxClockSkew)) {
		return nil, fmt.Errorf("%w: %w: proxy record of %s expires too far ahead", ErrBadRecord, ErrAhead, r.Domain)
	}
	if r.Issued.After(now.Add(MaxClockSkew)) {
		return nil, fmt.Errorf("%w: %w: proxy record of %s issued in the future", ErrBadRecord, ErrAhead, r.Domain)
	}
	if known := v.authority(r.Domain); known != nil && !sameKey(known, r.Authority) {
		return nil, fmt.Errorf("%w: %s is enrolled with another authority", ErrWrongAuthority, r.Domain)
	}
	if r.Authority != nil {
		c, err := OpenCertificate(r.Cert, r.Authority)
		if err != nil {
			return nil, fmt.Errorf("proxy record of %s: %w", r.Domain, err)
		}
		if c.Domain != r.Domain || c.Peer != r.Signer {
			return nil, fmt.Errorf("%w: certificate %d is for %s in %s, not proxy %s of %s", ErrCertMismatch, c.Serial, c.Peer, c.Domain, r.Signer, r.Domain)
		}
		if now.Before(c.NotBefore.Add(-MaxClockSkew)) || !now.Before(c.NotAfter) {
			return nil, fmt.Errorf("%w: certificate %d of proxy %s", ErrCertExpired, c.Serial, r.Signer)
		}
		if e := v.Enrollment; e != nil && e.Domain() == r.Domain && e.Revoked(c.Serial) {
			return nil, fmt.Errorf("%w: certificate %d of proxy %s", ErrCertRevoked, c.Serial, r.Signer)
		}
	}
	return r, nil
}

// Select implements record.Validator with the chain of custody
// (ProxySupersedes): a value replaces the one after it only if it continues
// its chain; otherwise the later value is kept. A storing node gets
// [incoming, stored] and so keeps its record against a record of another
// signer that its electors did not endorse, whatever its epoch. Records that
// do not continue each other's chain are reported to OnConflict; the overlay
// settles them in lookups by asking the key's closest storers.
func (v ProxyValidator) Select(key string, values [][]byte) (int, error) {
	rs := make([]*ProxyRecord, len(values))
	for i, val := range values {
		if r, err := v.open(key, val); err == nil {
			rs[i] = r
		}
	}
	best := selectBest(len(values), func(i int) bool { return rs[i] != nil },
		func(i, j int) bool { return ProxySupersedes(rs[i], rs[j]) })
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid proxy record among %d values", ErrBadRecord, len(values))
	}
	for i, r := range rs {
		if r == nil || i == best || bytes.Equal(values[i], values[best]) || ProxySupersedes(rs[best], r) {
			continue
		}
		if v.OnConflict != nil {
			v.OnConflict(key)
		}
		if v.OnRefuse != nil {
			reason := ReasonNoEvidence
			if !sameKey(r.Authority, rs[best].Authority) {
				reason = ReasonAuthority
			}
			v.OnRefuse(reason)
		}
	}
	return best, nil
}
