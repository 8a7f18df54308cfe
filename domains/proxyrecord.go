package domains

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
)

// MaxProxyLifetime bounds how far ahead a proxy record may expire: proxy
// records are short-lived and re-published, so a dead proxy's record, or one
// no storer should have kept, lapses soon.
const MaxProxyLifetime = 2 * time.Minute

// MaxProxies bounds the proxies listed in one proxy record.
const MaxProxies = 8

// MaxElectors bounds the electors (and endorsements) of one proxy record.
const MaxElectors = 8

// MaxEpoch bounds election epochs everywhere: a record or message with a
// higher epoch is refused, and the election saturates there instead of
// wrapping. It is 2^53, an integer every JSON reader keeps exactly.
const MaxEpoch = 1 << 53

// ProxyEnvelopeDomain is the libp2p signed-envelope domain of proxy records.
const ProxyEnvelopeDomain = "hiersip-proxy"

var proxyCodec = []byte("/hiersip/proxy/1")

func init() { record.RegisterType(&proxyEnvelope{}) }

// ErrWrongAuthority: a proxy record of an enrolled domain names another
// authority than the one the validator knows for the domain.
var ErrWrongAuthority = errors.New("domains: proxy record of another authority")

// ProxyRecord names the elected proxies of a domain. A proxy publishes it in
// the global overlay under the domain's Overlay-Resource-ID (draft §4.3) and
// in its domain overlay under LocalProxyResourceID, signed with its own key;
// the signer must be one of the listed proxies and electors.
//
// Electors are the domain's roster when the record was issued (proxies and
// candidates); the next record of another signer needs Endorsements of a
// majority of them (ProxySupersedes). Authority and Cert are set in an
// enrolled domain: the authority's public key and the signer's certificate.
type ProxyRecord struct {
	Domain       string
	Signer       peer.ID
	Epoch        uint64          // election term; at most MaxEpoch
	Proxies      []peer.AddrInfo // the domain's active proxies, best first
	Electors     []peer.ID       // the roster: who may endorse the next signer
	Endorsements []Endorsement   // electors of the previous record endorsing (Domain, Epoch, Signer)
	Authority    crypto.PubKey   // enrolled domains: the authority's key
	Cert         []byte          // enrolled domains: the signer's certificate
	Issued       time.Time
	Expires      time.Time
}

// Endorsement is an elector's signature over (domain, epoch, signer): "in
// epoch, I follow signer as the domain's proxy". The elector's peer ID must
// embed its public key (Ed25519 IDs do).
type Endorsement struct {
	Peer peer.ID
	Sig  []byte
}

// endorsePrefix separates endorsements from every other use of a node key.
const endorsePrefix = "hiersip-endorse/1\n"

func endorseMessage(domain string, epoch uint64, signer peer.ID) []byte {
	msg := make([]byte, 0, len(endorsePrefix)+len(domain)+1+8+len(signer))
	msg = append(msg, endorsePrefix...)
	msg = append(msg, domain...)
	msg = append(msg, 0)
	msg = binary.BigEndian.AppendUint64(msg, epoch)
	return append(msg, signer...)
}

// Endorse signs (domain, epoch, signer) with an elector's node key.
func Endorse(key crypto.PrivKey, domain string, epoch uint64, signer peer.ID) (Endorsement, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return Endorsement{}, err
	}
	sig, err := key.Sign(endorseMessage(domain, epoch, signer))
	if err != nil {
		return Endorsement{}, err
	}
	return Endorsement{Peer: id, Sig: sig}, nil
}

// Verify reports whether e is a valid endorsement of (domain, epoch, signer)
// by e.Peer, whose ID must embed its public key.
func (e Endorsement) Verify(domain string, epoch uint64, signer peer.ID) bool {
	if len(e.Sig) == 0 || len(e.Sig) > maxSigSize {
		return false
	}
	pub, err := e.Peer.ExtractPublicKey()
	if err != nil || pub == nil {
		return false
	}
	ok, err := pub.Verify(endorseMessage(domain, epoch, signer), e.Sig)
	return err == nil && ok
}

// maxSigSize bounds signatures in records (Ed25519: 64 bytes; room for
// ECDSA and secp256k1 DER forms).
const maxSigSize = 128

// proxyEnvelope adapts ProxyRecord to record.Record (whose Domain method
// would clash with the Domain field).
type proxyEnvelope struct{ r ProxyRecord }

type proxyJSON struct {
	Domain    string        `json:"domain"`
	Signer    string        `json:"signer"`
	Epoch     uint64        `json:"epoch"`
	Proxies   []proxyPeer   `json:"proxies"`
	Electors  []string      `json:"electors,omitempty"`
	Endorse   []endorseJSON `json:"endorse,omitempty"`
	Authority []byte        `json:"authority,omitempty"`
	Cert      []byte        `json:"cert,omitempty"`
	Issued    int64         `json:"issued"`
	Expires   int64         `json:"expires"`
}

type endorseJSON struct {
	Peer string `json:"p"`
	Sig  []byte `json:"s"`
}

type proxyPeer struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs,omitempty"`
}

func (e *proxyEnvelope) Domain() string { return ProxyEnvelopeDomain }
func (e *proxyEnvelope) Codec() []byte  { return proxyCodec }

func (e *proxyEnvelope) MarshalRecord() ([]byte, error) {
	r := &e.r
	j := proxyJSON{Domain: r.Domain, Signer: r.Signer.String(), Epoch: r.Epoch, Cert: r.Cert,
		Issued: r.Issued.UnixMilli(), Expires: r.Expires.UnixMilli()}
	for _, p := range r.Proxies {
		pp := proxyPeer{ID: p.ID.String()}
		for _, a := range p.Addrs {
			pp.Addrs = append(pp.Addrs, a.String())
		}
		j.Proxies = append(j.Proxies, pp)
	}
	for _, id := range r.Electors {
		j.Electors = append(j.Electors, id.String())
	}
	for _, en := range r.Endorsements {
		j.Endorse = append(j.Endorse, endorseJSON{Peer: en.Peer.String(), Sig: en.Sig})
	}
	var err error
	if j.Authority, err = marshalKey(r.Authority); err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

func (e *proxyEnvelope) UnmarshalRecord(data []byte) error {
	var j proxyJSON
	if err := decodeJSON(data, MaxRecordSize, &j, ErrBadRecord); err != nil {
		return err
	}
	if len(j.Proxies) == 0 || len(j.Proxies) > MaxProxies {
		return fmt.Errorf("%w: %d proxies, want 1 to %d", ErrBadRecord, len(j.Proxies), MaxProxies)
	}
	if len(j.Electors) > MaxElectors || len(j.Endorse) > MaxElectors {
		return fmt.Errorf("%w: more than %d electors or endorsements", ErrBadRecord, MaxElectors)
	}
	if j.Epoch > MaxEpoch {
		return fmt.Errorf("%w: %w: epoch %d above %d", ErrBadRecord, ErrAhead, j.Epoch, uint64(MaxEpoch))
	}
	if len(j.Cert) > MaxCertSize {
		return fmt.Errorf("%w: certificate of %d bytes", ErrRecordTooBig, len(j.Cert))
	}
	signer, err := peer.Decode(j.Signer)
	if err != nil {
		return fmt.Errorf("%w: signer: %v", ErrBadRecord, err)
	}
	r := ProxyRecord{Domain: j.Domain, Signer: signer, Epoch: j.Epoch, Cert: j.Cert,
		Issued: time.UnixMilli(j.Issued), Expires: time.UnixMilli(j.Expires)}
	for _, pp := range j.Proxies {
		id, err := peer.Decode(pp.ID)
		if err != nil {
			return fmt.Errorf("%w: proxy: %v", ErrBadRecord, err)
		}
		if len(pp.Addrs) > MaxAddrs {
			return fmt.Errorf("%w: too many addresses", ErrBadRecord)
		}
		ai := peer.AddrInfo{ID: id}
		for _, s := range pp.Addrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return fmt.Errorf("%w: address %q: %v", ErrBadRecord, s, err)
			}
			ai.Addrs = append(ai.Addrs, a)
		}
		r.Proxies = append(r.Proxies, ai)
	}
	seen := make(map[peer.ID]bool)
	for _, s := range j.Electors {
		id, err := peer.Decode(s)
		if err != nil || seen[id] {
			return fmt.Errorf("%w: elector %q", ErrBadRecord, s)
		}
		seen[id] = true
		r.Electors = append(r.Electors, id)
	}
	clear(seen)
	for _, en := range j.Endorse {
		id, err := peer.Decode(en.Peer)
		if err != nil || seen[id] || len(en.Sig) == 0 || len(en.Sig) > maxSigSize {
			return fmt.Errorf("%w: endorsement of %q", ErrBadRecord, en.Peer)
		}
		seen[id] = true
		r.Endorsements = append(r.Endorsements, Endorsement{Peer: id, Sig: en.Sig})
	}
	if j.Authority != nil {
		k, err := unmarshalEd25519(j.Authority, ErrBadRecord, "authority")
		if err != nil {
			return err
		}
		r.Authority = k
	}
	e.r = r
	return nil
}

// Seal signs the record with key and returns the marshalled envelope.
func (r *ProxyRecord) Seal(key crypto.PrivKey) ([]byte, error) {
	return sealRecord(&proxyEnvelope{r: *r}, key, MaxRecordSize)
}

// OpenProxyRecord verifies a sealed proxy record's signature, that the signer
// is the Signer it names, one of the listed proxies and, when the record
// names electors, one of them, and returns it. Endorsements are checked
// against the record a storing node holds (ProxySupersedes), the
// certificate by the validator.
func OpenProxyRecord(data []byte) (*ProxyRecord, error) {
	var e proxyEnvelope
	signer, err := openRecord(data, &e, MaxRecordSize, ErrBadRecord, "proxy record")
	if err != nil {
		return nil, err
	}
	r := &e.r
	if !r.Signer.MatchesPublicKey(signer) {
		return nil, ErrWrongSigner
	}
	if len(r.Electors) > 0 && !containsID(r.Electors, r.Signer) {
		return nil, fmt.Errorf("%w: signer %s is not an elector", ErrWrongSigner, r.Signer)
	}
	for _, p := range r.Proxies {
		if p.ID == r.Signer {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: signer %s is not a listed proxy", ErrWrongSigner, r.Signer)
}

func containsID(ids []peer.ID, id peer.ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// electors returns the record's electors; a record that names none has its
// proxies as electors.
func (r *ProxyRecord) electors() []peer.ID {
	if len(r.Electors) > 0 {
		return r.Electors
	}
	out := make([]peer.ID, 0, len(r.Proxies))
	for _, p := range r.Proxies {
		out = append(out, p.ID)
	}
	return out
}

// Endorsed counts the electors of prev that endorse r: valid endorsements of
// (r.Domain, r.Epoch, r.Signer) by prev's electors, and r's signer itself
// when it is one of them (its record's signature is its endorsement).
func (r *ProxyRecord) Endorsed(prev *ProxyRecord) int {
	return r.endorsedBy(prev.electors())
}

// endorsedBy counts the peers of el that endorse r (r's signer by its signature).
func (r *ProxyRecord) endorsedBy(el []peer.ID) int {
	n := 0
	if containsID(el, r.Signer) {
		n++
	}
	for _, en := range r.Endorsements {
		if en.Peer != r.Signer && containsID(el, en.Peer) && en.Verify(r.Domain, r.Epoch, r.Signer) {
			n++
		}
	}
	return n
}

// ProxySupersedes reports whether proxy record a may replace b (both of the
// same domain and valid): the chain of custody. A record of the same signer
// and authority replaces b by a higher epoch, then a later issue time. A
// record of another signer needs the same authority, an epoch at least b's,
// and either the endorsement of b's signer (a handoff) or endorsements of a
// majority of b's other electors: b's proxy is not counted, since a failover
// replaces a proxy that is gone and cannot endorse (with a proxy and one
// candidate, the candidate takes over alone; with two candidates, it needs
// the other's endorsement). Nothing else replaces b, a higher epoch alone
// included; a record that names no elector besides its proxy is replaced only
// by a handoff or when it lapses.
func ProxySupersedes(a, b *ProxyRecord) bool {
	if a.Domain != b.Domain || !sameKey(a.Authority, b.Authority) {
		return false
	}
	if a.Signer == b.Signer {
		if a.Epoch != b.Epoch {
			return a.Epoch > b.Epoch
		}
		return a.Issued.After(b.Issued)
	}
	if a.Epoch < b.Epoch || (a.Epoch == b.Epoch && !a.Issued.After(b.Issued)) {
		return false
	}
	var others []peer.ID
	handoff := false
	for _, e := range b.electors() {
		if e == b.Signer {
			handoff = a.endorsedBy([]peer.ID{e}) > 0
			continue
		}
		others = append(others, e)
	}
	return handoff || (len(others) > 0 && a.endorsedBy(others) > len(others)/2)
}

func sameKey(a, b crypto.PubKey) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equals(b)
}
