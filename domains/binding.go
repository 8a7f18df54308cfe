package domains

import (
	"encoding/json"
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
)

// Contact is one UA contact of a binding, as the serving node saw it.
type Contact struct {
	URI     string    // the UA's Contact URI, e.g. "sip:bob@127.0.0.1:5062"
	Expires time.Time // when this contact lapses
}

// Binding maps a user's AOR to the node that serves its user agents. It is
// stored at the AOR's User-Resource-ID in the domain overlay, sealed in a
// libp2p signed envelope by the serving node's key (see Seal), so only that
// node can change it.
type Binding struct {
	AOR      string         // canonical AOR
	Peer     peer.ID        // node that serves the UA; must be the signer
	Addrs    []ma.Multiaddr // the node's addresses, relay addresses included
	Contacts []Contact      // the UA contacts registered at that node
	Created  time.Time      // first registration by this node; kept across refreshes
	Expires  time.Time      // the record lapses then; a tombstone keeps this too
	Seq      uint64         // increases with every store by the same node
	Removed  bool           // tombstone: the AOR was unregistered
	Cert     []byte         // optional enrollment certificate (enrolled domains)
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
}

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
	return json.Marshal(j)
}

// UnmarshalRecord implements record.Record.
func (b *Binding) UnmarshalRecord(data []byte) error {
	if len(data) > MaxRecordSize {
		return ErrRecordTooBig
	}
	var j bindingJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRecord, err)
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

// OpenBinding verifies a sealed binding's signature and that its signer is
// the peer it names, and returns it. It does not check expiry, key or domain:
// the Validator does.
func OpenBinding(data []byte) (*Binding, error) {
	if len(data) > MaxRecordSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooBig, len(data), MaxRecordSize)
	}
	var b Binding
	env, err := record.ConsumeTypedEnvelope(data, &b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if !b.Peer.MatchesPublicKey(env.PublicKey) {
		return nil, ErrWrongSigner
	}
	return &b, nil
}

// sealRecord signs rec with key and returns the marshalled envelope, refused
// (ErrRecordTooBig) when it is larger than max.
func sealRecord(rec record.Record, key crypto.PrivKey, max int) ([]byte, error) {
	env, err := record.Seal(rec, key)
	if err != nil {
		return nil, err
	}
	data, err := env.Marshal()
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooBig, len(data), max)
	}
	return data, nil
}
