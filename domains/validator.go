package domains

import (
	"bytes"
	"fmt"
	"strings"
	"time"
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
// the key of the peer it names, stored under Hash(AOR), for an AOR inside the
// domain, not expired, expiring at most MaxBindingLifetime ahead, and within
// the size limits. In an enrolled domain (Enrollment set) it must also carry
// a certificate of the domain's authority that covers its AOR and peer, is
// valid now and is not on the newest revocation list seen.
type BindingValidator struct {
	Domain     string
	Now        func() time.Time // nil: time.Now
	Enrollment *Enrollment      // nil: an open domain (first come, first served)
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
	if b.Expires.After(now.Add(MaxBindingLifetime + MaxClockSkew)) {
		return nil, fmt.Errorf("%w: %s expires too far ahead", ErrBadRecord, b.AOR)
	}
	if b.Created.After(now.Add(MaxClockSkew)) {
		return nil, fmt.Errorf("%w: %s created in the future", ErrBadRecord, b.AOR)
	}
	if v.Enrollment != nil {
		if _, err := v.Enrollment.VerifyCert(b.Cert, aor, b.Peer, now); err != nil {
			return nil, fmt.Errorf("binding of %s: %w", b.AOR, err)
		}
	}
	return b, nil
}

// Select implements record.Validator. Between records of the same signer the
// highest sequence number wins (a tombstone with a higher sequence number
// wins over the bindings before it). Between signers, a live binding wins
// over a tombstone, and of two live bindings the one registered first wins
// (first come, first served until it expires; see the package doc for the
// limits of this in open domains). Remaining ties keep the later value: kad-dht
// passes [new, stored] when it stores, so a stored record is not displaced.
func (v BindingValidator) Select(key string, values [][]byte) (int, error) {
	now := v.now()
	best, bestIdx := (*Binding)(nil), -1
	for i, val := range values {
		b, err := v.open(key, val)
		if err != nil {
			continue
		}
		if best == nil || bindingBetter(b, best, now) || (!bindingBetter(best, b, now) && i > bestIdx && !bytes.Equal(val, values[bestIdx])) {
			best, bestIdx = b, i
		}
	}
	if bestIdx < 0 {
		return 0, fmt.Errorf("%w: no valid binding among %d values", ErrBadRecord, len(values))
	}
	return bestIdx, nil
}

// bindingBetter reports whether a is strictly better than b.
func bindingBetter(a, b *Binding, now time.Time) bool {
	if a.Peer == b.Peer {
		return a.Seq > b.Seq
	}
	al, bl := a.Live(now), b.Live(now)
	if al != bl {
		return al
	}
	if al {
		return a.Created.Before(b.Created)
	}
	return a.Expires.After(b.Expires)
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
// records of that domain (Domain set); in the global overlay (Domain empty)
// it accepts any valid domain's record under that domain's key.
type ProxyValidator struct {
	Domain string
	Global bool
	Now    func() time.Time
}

// Validate implements record.Validator.
func (v ProxyValidator) Validate(key string, value []byte) error {
	_, err := v.open(key, value)
	return err
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
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	if !now.Before(r.Expires) {
		return nil, fmt.Errorf("%w: proxy record of %s", ErrExpired, r.Domain)
	}
	if r.Expires.After(now.Add(MaxProxyLifetime + MaxClockSkew)) {
		return nil, fmt.Errorf("%w: proxy record of %s expires too far ahead", ErrBadRecord, r.Domain)
	}
	return r, nil
}

// Select implements record.Validator: the highest epoch wins, then the most
// recently issued record; remaining ties keep the later value.
func (v ProxyValidator) Select(key string, values [][]byte) (int, error) {
	var best *ProxyRecord
	bestIdx := -1
	for i, val := range values {
		r, err := v.open(key, val)
		if err != nil {
			continue
		}
		if best == nil || proxyBetter(r, best) || (!proxyBetter(best, r) && !bytes.Equal(val, values[bestIdx])) {
			best, bestIdx = r, i
		}
	}
	if bestIdx < 0 {
		return 0, fmt.Errorf("%w: no valid proxy record among %d values", ErrBadRecord, len(values))
	}
	return bestIdx, nil
}

func proxyBetter(a, b *ProxyRecord) bool {
	if a.Epoch != b.Epoch {
		return a.Epoch > b.Epoch
	}
	if !a.Issued.Equal(b.Issued) {
		return a.Issued.After(b.Issued)
	}
	return a.Signer < b.Signer
}
