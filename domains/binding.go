package domains

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
)

// Limits of a binding record. A record outside them is rejected by the
// validator, so a peer cannot fill another's datastore with huge values.
const (
	MaxRecordSize      = 8 << 10        // bytes of a sealed envelope
	MaxContacts        = 16             // contacts per binding
	MaxAddrs           = 16             // node addresses per binding
	MaxBindingLifetime = 24 * time.Hour // how far in the future Expires may lie
	MaxClockSkew       = 5 * time.Minute
)

// BindingEnvelopeDomain is the libp2p signed-envelope domain of binding records.
const BindingEnvelopeDomain = "hiersip-binding"

// bindingCodec is the multicodec-style payload type of binding records.
var bindingCodec = []byte("/hiersip/binding/1")

func init() { record.RegisterType(&Binding{}) }

// Errors of binding records.
var (
	ErrNotFound     = errors.New("domains: not found")
	ErrBadRecord    = errors.New("domains: invalid record")
	ErrExpired      = errors.New("domains: record expired")
	ErrWrongKey     = errors.New("domains: record stored under the wrong key")
	ErrWrongSigner  = errors.New("domains: record not signed by its peer")
	ErrRecordTooBig = errors.New("domains: record too large")
	ErrBadOwner     = errors.New("domains: record not signed by its owner")
	ErrAhead        = errors.New("domains: record dated ahead of the clock")
)

// Contact is one UA contact of a binding, as the serving node saw it.
type Contact struct {
	// URI is the UA's Contact URI, e.g. "sip:bob@127.0.0.1:5062". The serving
	// node keeps it; bindings in the overlay carry it empty (Redacted).
	URI     string
	Expires time.Time // when this contact lapses
	// Instance is the device's RFC 5626 +sip.instance ("<urn:uuid:…>"), ""
	// when it sent none; Since is when it registered at this node. Neither
	// leaves the node: device sets carry a hash of the instance
	// (InstanceTag).
	Instance string
	Since    time.Time
}

// Binding maps a user's AOR to the node that serves its user agents. It is
// stored at the AOR's User-Resource-ID in the domain overlay, sealed in a
// libp2p signed envelope by the serving node's key (see Seal) and, when the
// user has a user key, signed with it too (SignOwner). Its owner (OwnerID)
// is the user key, or the node without one: only the owner can replace a
// live binding (BindingValidator).
type Binding struct {
	AOR      string         // canonical AOR
	Peer     peer.ID        // node that serves the UA; must be the signer
	Addrs    []ma.Multiaddr // the node's addresses, relay addresses included
	Contacts []Contact      // the UA contacts registered at that node (URIs redacted in the overlay)
	Created  time.Time      // first registration by this node; informational, decides nothing
	Expires  time.Time      // the record lapses then; a tombstone keeps this too
	Seq      uint64         // the owner's version: microseconds of the signer's clock, increasing
	Removed  bool           // tombstone: the AOR was unregistered
	Cert     []byte         // optional enrollment certificate (enrolled domains)
	// Owner is the user's public key (Ed25519) when the user has a user key;
	// OwnerSig is its signature over the rest of the binding (SignOwner).
	Owner    crypto.PubKey
	OwnerSig []byte

	ownerMsg []byte // what OwnerSig signs, as received
}

type bindingJSON struct {
	AOR      string        `json:"aor"`
	Peer     string        `json:"peer"`
	Addrs    []string      `json:"addrs,omitempty"`
	Contacts []contactJSON `json:"contacts,omitempty"`
	Created  int64         `json:"created"`
	Expires  int64         `json:"expires"`
	Seq      uint64        `json:"seq"`
	Removed  bool          `json:"removed,omitempty"`
	Cert     []byte        `json:"cert,omitempty"`
	Owner    []byte        `json:"owner,omitempty"`
	OwnerSig []byte        `json:"osig,omitempty"`
}

// ownerSigPrefix separates owner signatures from every other use of a user key.
const ownerSigPrefix = "hiersip-binding-owner/1\n"

// MaxOwnerSig bounds an owner signature (Ed25519's are 64 bytes).
const MaxOwnerSig = 64

type contactJSON struct {
	URI     string `json:"uri"`
	Expires int64  `json:"expires"`
}

// Domain implements record.Record.
func (b *Binding) Domain() string { return BindingEnvelopeDomain }

// Codec implements record.Record.
func (b *Binding) Codec() []byte { return bindingCodec }

// MarshalRecord implements record.Record.
func (b *Binding) MarshalRecord() ([]byte, error) {
	return marshalSigned(b.toJSON, func(j *bindingJSON) { j.OwnerSig = b.OwnerSig })
}

func (b *Binding) toJSON() (bindingJSON, error) {
	j := bindingJSON{
		AOR: b.AOR, Peer: b.Peer.String(), Created: b.Created.UnixMilli(),
		Expires: b.Expires.UnixMilli(), Seq: b.Seq, Removed: b.Removed, Cert: b.Cert,
	}
	for _, a := range b.Addrs {
		j.Addrs = append(j.Addrs, a.String())
	}
	for _, c := range b.Contacts {
		j.Contacts = append(j.Contacts, contactJSON{URI: c.URI, Expires: c.Expires.UnixMilli()})
	}
	var err error
	j.Owner, err = marshalKey(b.Owner)
	return j, err
}

// SignOwner makes the binding the user's: it sets Owner to the user key's
// public half and signs the binding with it. Sign again after any change;
// Seal then seals the signed binding with the node's key.
func (b *Binding) SignOwner(userKey crypto.PrivKey) (err error) {
	b.ownerMsg, b.OwnerSig, err = signAs(userKey, ownerSigPrefix,
		func(pub crypto.PubKey) { b.Owner, b.OwnerSig = pub, nil }, b.toJSON)
	return err
}

// OwnerID identifies the binding's owner: its user key when it has one,
// else its serving node. Two bindings of the same owner replace each other
// by sequence number.
func (b *Binding) OwnerID() string {
	if b.Owner != nil {
		if raw, err := b.Owner.Raw(); err == nil {
			return "user:" + string(raw)
		}
	}
	return "node:" + string(b.Peer)
}

// Redacted returns a copy of b without its contacts' URIs, as bindings are
// published: the phones' addresses stay with the serving node.
func (b Binding) Redacted() Binding {
	cs := make([]Contact, len(b.Contacts))
	for i, c := range b.Contacts {
		cs[i] = Contact{Expires: c.Expires}
	}
	b.Contacts = cs
	return b
}

// UnmarshalRecord implements record.Record.
func (b *Binding) UnmarshalRecord(data []byte) error {
	var j bindingJSON
	if err := decodeJSON(data, MaxRecordSize, &j, ErrBadRecord); err != nil {
		return err
	}
	if len(j.Addrs) > MaxAddrs || len(j.Contacts) > MaxContacts {
		return fmt.Errorf("%w: too many addresses or contacts", ErrBadRecord)
	}
	p, err := peer.Decode(j.Peer)
	if err != nil {
		return fmt.Errorf("%w: peer: %v", ErrBadRecord, err)
	}
	*b = Binding{
		AOR: j.AOR, Peer: p, Created: time.UnixMilli(j.Created), Expires: time.UnixMilli(j.Expires),
		Seq: j.Seq, Removed: j.Removed, Cert: j.Cert,
	}
	if j.Owner != nil || j.OwnerSig != nil {
		if b.Owner, b.ownerMsg, err = openOwner(j.Owner, &j.OwnerSig, ownerSigPrefix, &j); err != nil {
			return err
		}
		b.OwnerSig = j.OwnerSig
	}
	for _, s := range j.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("%w: address %q: %v", ErrBadRecord, s, err)
		}
		b.Addrs = append(b.Addrs, a)
	}
	for _, c := range j.Contacts {
		b.Contacts = append(b.Contacts, Contact{URI: c.URI, Expires: time.UnixMilli(c.Expires)})
	}
	return nil
}

// AddrInfo returns the serving node's peer ID and addresses.
func (b *Binding) AddrInfo() peer.AddrInfo { return peer.AddrInfo{ID: b.Peer, Addrs: b.Addrs} }

// Live reports whether the binding has contacts and has not expired at now.
func (b *Binding) Live(now time.Time) bool { return !b.Removed && now.Before(b.Expires) }

// Seal signs the binding with key and returns the marshalled envelope, the
// value stored in the overlay.
func (b *Binding) Seal(key crypto.PrivKey) ([]byte, error) {
	return sealRecord(b, key, MaxRecordSize)
}

// OpenBinding verifies a sealed binding's signature, that its signer is the
// peer it names and, if it has an owner, the owner's signature, and returns
// it. It does not check expiry, key or domain: the Validator does.
func OpenBinding(data []byte) (*Binding, error) {
	var b Binding
	signer, err := openRecord(data, &b, MaxRecordSize, ErrBadRecord, "binding")
	if err != nil {
		return nil, err
	}
	if !b.Peer.MatchesPublicKey(signer) {
		return nil, ErrWrongSigner
	}
	if b.Owner != nil {
		if ok, err := b.Owner.Verify(b.ownerMsg, b.OwnerSig); err != nil || !ok {
			return nil, ErrBadOwner
		}
	}
	return &b, nil
}
