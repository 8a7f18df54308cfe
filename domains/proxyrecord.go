package domains

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
)

// MaxProxyLifetime bounds how far ahead a proxy record may expire: proxy
// records are short-lived and re-published, so a dead proxy soon stops
// attracting traffic.
const MaxProxyLifetime = 10 * time.Minute

// MaxProxies bounds the proxies listed in one proxy record.
const MaxProxies = 8

// ProxyEnvelopeDomain is the libp2p signed-envelope domain of proxy records.
const ProxyEnvelopeDomain = "hiersip-proxy"

var proxyCodec = []byte("/hiersip/proxy/1")

func init() { record.RegisterType(&proxyEnvelope{}) }

// ProxyRecord names the elected proxies of a domain. A proxy publishes it in
// the global overlay under the domain's Overlay-Resource-ID (draft §4.3) and
// in its domain overlay under LocalProxyResourceID, signed with its own key;
// the signer must be one of the listed proxies.
type ProxyRecord struct {
	Domain  string
	Signer  peer.ID
	Epoch   uint64          // election term; a higher epoch supersedes
	Proxies []peer.AddrInfo // the domain's active proxies, best first
	Issued  time.Time
	Expires time.Time
}

// proxyEnvelope adapts ProxyRecord to record.Record (whose Domain method
// would clash with the Domain field).
type proxyEnvelope struct{ r ProxyRecord }

type proxyJSON struct {
	Domain  string      `json:"domain"`
	Signer  string      `json:"signer"`
	Epoch   uint64      `json:"epoch"`
	Proxies []proxyPeer `json:"proxies"`
	Issued  int64       `json:"issued"`
	Expires int64       `json:"expires"`
}

type proxyPeer struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs,omitempty"`
}

func (e *proxyEnvelope) Domain() string { return ProxyEnvelopeDomain }
func (e *proxyEnvelope) Codec() []byte  { return proxyCodec }

func (e *proxyEnvelope) MarshalRecord() ([]byte, error) {
	r := &e.r
	j := proxyJSON{Domain: r.Domain, Signer: r.Signer.String(), Epoch: r.Epoch,
		Issued: r.Issued.UnixMilli(), Expires: r.Expires.UnixMilli()}
	for _, p := range r.Proxies {
		pp := proxyPeer{ID: p.ID.String()}
		for _, a := range p.Addrs {
			pp.Addrs = append(pp.Addrs, a.String())
		}
		j.Proxies = append(j.Proxies, pp)
	}
	return json.Marshal(j)
}

func (e *proxyEnvelope) UnmarshalRecord(data []byte) error {
	if len(data) > MaxRecordSize {
		return ErrRecordTooBig
	}
	var j proxyJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if len(j.Proxies) == 0 || len(j.Proxies) > MaxProxies {
		return fmt.Errorf("%w: %d proxies, want 1 to %d", ErrBadRecord, len(j.Proxies), MaxProxies)
	}
	signer, err := peer.Decode(j.Signer)
	if err != nil {
		return fmt.Errorf("%w: signer: %v", ErrBadRecord, err)
	}
	r := ProxyRecord{Domain: j.Domain, Signer: signer, Epoch: j.Epoch,
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
	e.r = r
	return nil
}

// Seal signs the record with key and returns the marshalled envelope.
func (r *ProxyRecord) Seal(key crypto.PrivKey) ([]byte, error) {
	return sealRecord(&proxyEnvelope{r: *r}, key, MaxRecordSize)
}

// OpenProxyRecord verifies a sealed proxy record's signature, that the signer
// is the Signer it names and one of the listed proxies, and returns it.
func OpenProxyRecord(data []byte) (*ProxyRecord, error) {
	if len(data) > MaxRecordSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooBig, len(data), MaxRecordSize)
	}
	var e proxyEnvelope
	env, err := record.ConsumeTypedEnvelope(data, &e)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	r := &e.r
	if !r.Signer.MatchesPublicKey(env.PublicKey) {
		return nil, ErrWrongSigner
	}
	for _, p := range r.Proxies {
		if p.ID == r.Signer {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: signer %s is not a listed proxy", ErrWrongSigner, r.Signer)
}
