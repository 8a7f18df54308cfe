package domains

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
)

// Device sets (issue 19, preview): every live device of an AOR, whichever
// node of the domain serves it. A DeviceSet is stored under DeviceSetKey
// (namespace NSDeviceSet) and lists one DeviceEntry per serving node; each
// entry is signed by its node and lists the node's devices by InstanceTag,
// never by contact address. The set as a whole is sealed by the node that
// wrote it last and signed by its owner, as a Binding is. See the package
// doc of fork for how a call uses it.

// Limits of device sets. A set outside them is refused by the validator.
const (
	MaxServingNodes   = 8         // entries (serving nodes) per set
	MaxDevicesPerNode = 16        // devices per entry
	MaxDevicesPerAOR  = 32        // devices per set, all entries together
	MaxEntryAddrs     = 8         // node addresses per entry
	MaxDeviceSetSize  = 32 << 10  // bytes of a sealed set
	MaxTagLength      = 64        // bytes of an instance tag
	DeviceTombstone   = time.Hour // least lifetime of a set without entries
)

// NSDeviceSet is the key namespace of device sets in a domain overlay.
const NSDeviceSet = "hsd"

// DeviceSetEnvelopeDomain is the libp2p signed-envelope domain of device sets.
const DeviceSetEnvelopeDomain = "hiersip-devices"

var deviceSetCodec = []byte("/hiersip/devices/1")

func init() { record.RegisterType(&DeviceSet{}) }

// Errors of device sets.
var (
	ErrOtherOwner   = errors.New("domains: the AOR's live device set belongs to another owner")
	ErrTooManyNodes = errors.New("domains: too many serving nodes or devices for one AOR")
	ErrStaleSet     = errors.New("domains: device set drops a live entry of another node")
)

// DeviceSetKey returns the domain-overlay DHT key of an AOR's device set:
// SHA-256 of "devices\n" and the canonical AOR, so that it never collides
// with the binding's User-Resource-ID.
func DeviceSetKey(a AOR) string {
	id := sha256.Sum256([]byte("devices\n" + a.String()))
	return "/" + NSDeviceSet + "/" + string(id[:])
}

// InstanceTag returns the name a device has in a device set: the unpadded
// base64url of the first 16 bytes of SHA-256 over a prefix, the AOR and the
// device's RFC 5626 instance ID (the +sip.instance value, e.g.
// "<urn:uuid:…>"), taken without its angle brackets and lower-cased, so
// that the gr parameter of the device's public GRUU (RFC 5627: the AOR with
// gr=urn:uuid:…) gives the same tag. A storer sees only the hash. A contact
// without an instance ID gets a tag of the serving node's own choice (a
// keyed hash of its contact), never published in clear.
func InstanceTag(aor AOR, instance string) string {
	instance = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(instance), "<"), ">"))
	h := sha256.Sum256([]byte("hiersip-instance/1\n" + aor.String() + "\n" + instance))
	return base64.RawURLEncoding.EncodeToString(h[:16])
}

// DeviceRef is one device of an entry.
type DeviceRef struct {
	Tag     string    // InstanceTag
	Since   time.Time // when the device registered at this node (decides between two nodes that list it)
	Expires time.Time // when its registration lapses
}

// DeviceEntry is a serving node's part of a device set: the node, its
// addresses and the devices it serves, signed by the node (SignEntry). Other
// nodes carry it unchanged when they rewrite the set.
type DeviceEntry struct {
	Peer    peer.ID
	Addrs   []ma.Multiaddr
	Devices []DeviceRef
	Expires time.Time // at most the set's Expires
	Seq     uint64    // the node's version of its entry (microseconds of its clock)
	Cert    []byte    // enrolled domains: the node's certificate for the AOR
	Sig     []byte    // the node's signature (SignEntry)

	sigMsg []byte
}

// Live reports whether the entry lists a device whose registration has not
// lapsed at now.
func (e *DeviceEntry) Live(now time.Time) bool {
	if !now.Before(e.Expires) {
		return false
	}
	return slices.ContainsFunc(e.Devices, func(d DeviceRef) bool { return now.Before(d.Expires) })
}

// AddrInfo returns the serving node's peer ID and addresses.
func (e *DeviceEntry) AddrInfo() peer.AddrInfo { return peer.AddrInfo{ID: e.Peer, Addrs: e.Addrs} }

// DeviceSet lists every serving node of an AOR with its devices. Writer is
// the node that sealed it (the envelope's signer). Its owner is the user key
// (Owner, OwnerSig) when the user has one, the writer otherwise (then the
// set lists at most the writer's own entry), and in an enrolled domain every
// certified node. Only the owner replaces a live set, by a higher Seq, and
// only if it keeps every other node's live entry at least as new as the
// stored one (DeviceSetValidator): a node cannot drop another's devices.
type DeviceSet struct {
	AOR      string
	Writer   peer.ID
	Seq      uint64
	Expires  time.Time
	Entries  []DeviceEntry
	Cert     []byte // enrolled domains: the writer's certificate for the AOR
	Owner    crypto.PubKey
	OwnerSig []byte

	ownerMsg []byte
}

type deviceSetJSON struct {
	AOR      string            `json:"aor"`
	Writer   string            `json:"writer"`
	Seq      uint64            `json:"seq"`
	Expires  int64             `json:"expires"`
	Entries  []deviceEntryJSON `json:"entries,omitempty"`
	Cert     []byte            `json:"cert,omitempty"`
	Owner    []byte            `json:"owner,omitempty"`
	OwnerSig []byte            `json:"osig,omitempty"`
}

type deviceEntryJSON struct {
	Peer    string          `json:"peer"`
	Addrs   []string        `json:"addrs,omitempty"`
	Devices []deviceRefJSON `json:"devices,omitempty"`
	Expires int64           `json:"expires"`
	Seq     uint64          `json:"seq"`
	Cert    []byte          `json:"cert,omitempty"`
	Sig     []byte          `json:"sig,omitempty"`
}

type deviceRefJSON struct {
	Tag     string `json:"tag"`
	Since   int64  `json:"since"`
	Expires int64  `json:"expires"`
}

const (
	entrySigPrefix    = "hiersip-device-entry/1\n"
	devOwnerSigPrefix = "hiersip-devices-owner/1\n"
)

func (e *DeviceEntry) toJSON() deviceEntryJSON {
	j := deviceEntryJSON{Peer: e.Peer.String(), Expires: e.Expires.UnixMilli(), Seq: e.Seq, Cert: e.Cert, Sig: e.Sig}
	for _, a := range e.Addrs {
		j.Addrs = append(j.Addrs, a.String())
	}
	for _, d := range e.Devices {
		j.Devices = append(j.Devices, deviceRefJSON{Tag: d.Tag, Since: d.Since.UnixMilli(), Expires: d.Expires.UnixMilli()})
	}
	return j
}

func entryMessage(aor string, j deviceEntryJSON) ([]byte, error) {
	j.Sig = nil
	return signedMessage(entrySigPrefix+aor+"\n", j)
}

// SignEntry signs e for aor with the serving node's key, whose peer ID
// e.Peer must be. Sign again after any change.
func (e *DeviceEntry) SignEntry(aor AOR, nodeKey crypto.PrivKey) error {
	if !e.Peer.MatchesPrivateKey(nodeKey) {
		return fmt.Errorf("%w: entry of %s signed by another key", ErrWrongSigner, e.Peer)
	}
	e.Sig = nil
	msg, err := entryMessage(aor.String(), e.toJSON())
	if err != nil {
		return err
	}
	if e.Sig, err = nodeKey.Sign(msg); err != nil {
		return err
	}
	e.sigMsg = msg
	return nil
}

func (s *DeviceSet) toJSON() (deviceSetJSON, error) {
	j := deviceSetJSON{AOR: s.AOR, Writer: s.Writer.String(), Seq: s.Seq, Expires: s.Expires.UnixMilli(), Cert: s.Cert}
	for i := range s.Entries {
		j.Entries = append(j.Entries, s.Entries[i].toJSON())
	}
	var err error
	j.Owner, err = marshalKey(s.Owner)
	return j, err
}

// SignOwner makes the set the user's: it sets Owner to the user key's
// public half and signs the set with it. Sign after the entries are signed.
func (s *DeviceSet) SignOwner(userKey crypto.PrivKey) (err error) {
	s.ownerMsg, s.OwnerSig, err = signAs(userKey, devOwnerSigPrefix,
		func(pub crypto.PubKey) { s.Owner, s.OwnerSig = pub, nil }, s.toJSON)
	return err
}

// Domain implements record.Record.
func (s *DeviceSet) Domain() string { return DeviceSetEnvelopeDomain }

// Codec implements record.Record.
func (s *DeviceSet) Codec() []byte { return deviceSetCodec }

// MarshalRecord implements record.Record.
func (s *DeviceSet) MarshalRecord() ([]byte, error) {
	return marshalSigned(s.toJSON, func(j *deviceSetJSON) { j.OwnerSig = s.OwnerSig })
}

// UnmarshalRecord implements record.Record. It checks the bounds and the
// shape; signatures are checked by OpenDeviceSet.
func (s *DeviceSet) UnmarshalRecord(data []byte) error {
	var j deviceSetJSON
	if err := decodeJSON(data, MaxDeviceSetSize, &j, ErrBadRecord); err != nil {
		return err
	}
	if len(j.Entries) > MaxServingNodes {
		return fmt.Errorf("%w: %w: %d serving nodes, limit %d", ErrBadRecord, ErrTooManyNodes, len(j.Entries), MaxServingNodes)
	}
	w, err := peer.Decode(j.Writer)
	if err != nil {
		return fmt.Errorf("%w: writer: %v", ErrBadRecord, err)
	}
	*s = DeviceSet{AOR: j.AOR, Writer: w, Seq: j.Seq, Expires: time.UnixMilli(j.Expires), Cert: j.Cert}
	if len(j.Cert) > MaxCertSize {
		return fmt.Errorf("%w: certificate of %d bytes", ErrBadRecord, len(j.Cert))
	}
	total := 0
	for _, ej := range j.Entries {
		e, err := entryFromJSON(j.AOR, ej)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(s.Entries, func(o DeviceEntry) bool { return o.Peer == e.Peer }) {
			return fmt.Errorf("%w: two entries of %s", ErrBadRecord, e.Peer)
		}
		total += len(e.Devices)
		s.Entries = append(s.Entries, e)
	}
	if total > MaxDevicesPerAOR {
		return fmt.Errorf("%w: %w: %d devices, limit %d", ErrBadRecord, ErrTooManyNodes, total, MaxDevicesPerAOR)
	}
	if j.Owner != nil || j.OwnerSig != nil {
		if s.Owner, s.ownerMsg, err = openOwner(j.Owner, &j.OwnerSig, devOwnerSigPrefix, &j); err != nil {
			return err
		}
		s.OwnerSig = j.OwnerSig
	}
	return nil
}

func entryFromJSON(aor string, j deviceEntryJSON) (DeviceEntry, error) {
	p, err := peer.Decode(j.Peer)
	if err != nil {
		return DeviceEntry{}, fmt.Errorf("%w: entry peer: %v", ErrBadRecord, err)
	}
	if len(j.Addrs) > MaxEntryAddrs || len(j.Devices) > MaxDevicesPerNode {
		return DeviceEntry{}, fmt.Errorf("%w: %w: entry of %s has %d addresses and %d devices", ErrBadRecord, ErrTooManyNodes, p, len(j.Addrs), len(j.Devices))
	}
	if len(j.Sig) == 0 || len(j.Sig) > MaxOwnerSig || len(j.Cert) > MaxCertSize {
		return DeviceEntry{}, fmt.Errorf("%w: entry of %s: signature or certificate size", ErrBadRecord, p)
	}
	e := DeviceEntry{Peer: p, Expires: time.UnixMilli(j.Expires), Seq: j.Seq, Cert: j.Cert, Sig: j.Sig}
	for _, s := range j.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return DeviceEntry{}, fmt.Errorf("%w: address %q: %v", ErrBadRecord, s, err)
		}
		e.Addrs = append(e.Addrs, a)
	}
	for _, d := range j.Devices {
		if d.Tag == "" || len(d.Tag) > MaxTagLength {
			return DeviceEntry{}, fmt.Errorf("%w: device tag of %d bytes", ErrBadRecord, len(d.Tag))
		}
		if slices.ContainsFunc(e.Devices, func(o DeviceRef) bool { return o.Tag == d.Tag }) {
			return DeviceEntry{}, fmt.Errorf("%w: device %s listed twice by %s", ErrBadRecord, d.Tag, p)
		}
		e.Devices = append(e.Devices, DeviceRef{Tag: d.Tag, Since: time.UnixMilli(d.Since), Expires: time.UnixMilli(d.Expires)})
	}
	if e.sigMsg, err = entryMessage(aor, j); err != nil {
		return DeviceEntry{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	return e, nil
}

// Seal signs the set with the writer's node key (whose peer ID s.Writer
// must be) and returns the marshalled envelope, the value stored.
func (s *DeviceSet) Seal(nodeKey crypto.PrivKey) ([]byte, error) {
	return sealRecord(s, nodeKey, MaxDeviceSetSize)
}

// OpenDeviceSet verifies a sealed set's envelope (signed by its Writer),
// every entry's node signature and, if it has an owner, the owner's
// signature, and returns it. It does not check expiry, key, domain,
// ownership or certificates: DeviceSetValidator does.
func OpenDeviceSet(data []byte) (*DeviceSet, error) {
	if len(data) > MaxDeviceSetSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooBig, len(data), MaxDeviceSetSize)
	}
	var s DeviceSet
	env, err := record.ConsumeTypedEnvelope(data, &s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if !s.Writer.MatchesPublicKey(env.PublicKey) {
		return nil, ErrWrongSigner
	}
	for i := range s.Entries {
		e := &s.Entries[i]
		pk, err := e.Peer.ExtractPublicKey()
		if err != nil {
			return nil, fmt.Errorf("%w: entry of %s: no public key in its peer ID", ErrWrongSigner, e.Peer)
		}
		if ok, err := pk.Verify(e.sigMsg, e.Sig); err != nil || !ok {
			return nil, fmt.Errorf("%w: entry of %s", ErrWrongSigner, e.Peer)
		}
	}
	if s.Owner != nil {
		if ok, err := s.Owner.Verify(s.ownerMsg, s.OwnerSig); err != nil || !ok {
			return nil, ErrBadOwner
		}
	}
	return &s, nil
}

// Live reports whether the set lists a live device at now.
func (s *DeviceSet) Live(now time.Time) bool {
	if !now.Before(s.Expires) {
		return false
	}
	for i := range s.Entries {
		if s.Entries[i].Live(now) {
			return true
		}
	}
	return false
}

// Entry returns the entry of peer p, or nil.
func (s *DeviceSet) Entry(p peer.ID) *DeviceEntry {
	for i := range s.Entries {
		if s.Entries[i].Peer == p {
			return &s.Entries[i]
		}
	}
	return nil
}

// DeviceSetValidator validates device sets of one domain and implements
// record.Validator. A set is valid when its envelope is signed by its
// Writer, every entry by its node, the set by its Owner if it names one;
// it is stored under DeviceSetKey of a canonical AOR of the domain; it has
// not expired and expires at most MaxBindingLifetime (+ MaxClockSkew)
// ahead, every entry no later than the set; Seq and the entries' Seq are at
// most MaxClockSkew ahead of the clock; the bounds hold. Without an owner
// key and outside an enrolled domain, the writer owns the set and it lists
// at most the writer's own entry. In an enrolled domain the writer and
// every entry's node need a valid certificate for the AOR.
type DeviceSetValidator struct {
	Domain     string
	Now        func() time.Time
	Enrollment *Enrollment
	// OnConflict and OnRefuse as in BindingValidator.
	OnConflict func(key string)
	OnRefuse   func(reason string)
}

func (v DeviceSetValidator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Validate implements record.Validator.
func (v DeviceSetValidator) Validate(key string, value []byte) error {
	_, err := v.Open(key, value)
	if err != nil && v.OnRefuse != nil {
		v.OnRefuse(RefusalReason(err))
	}
	return err
}

// Open validates value as the device set stored under key and returns it.
func (v DeviceSetValidator) Open(key string, value []byte) (*DeviceSet, error) {
	s, err := OpenDeviceSet(value)
	if err != nil {
		return nil, err
	}
	aor, err := ParseAOR(s.AOR)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if aor.String() != s.AOR {
		return nil, fmt.Errorf("%w: AOR %q is not canonical", ErrBadRecord, s.AOR)
	}
	if key != DeviceSetKey(aor) {
		return nil, fmt.Errorf("%w: devices of %s", ErrWrongKey, s.AOR)
	}
	if !aor.InDomain(v.Domain) {
		return nil, fmt.Errorf("%w: %s not in %s", ErrNotInDomain, s.AOR, v.Domain)
	}
	now := v.now()
	if !now.Before(s.Expires) {
		return nil, fmt.Errorf("%w: devices of %s", ErrExpired, s.AOR)
	}
	ahead := now.Add(MaxClockSkew)
	if s.Expires.After(ahead.Add(MaxBindingLifetime)) {
		return nil, fmt.Errorf("%w: %w: devices of %s expire too far ahead", ErrBadRecord, ErrAhead, s.AOR)
	}
	if s.Seq > SeqAt(ahead) {
		return nil, fmt.Errorf("%w: %w: devices of %s: sequence number ahead of the clock", ErrBadRecord, ErrAhead, s.AOR)
	}
	for i := range s.Entries {
		e := &s.Entries[i]
		if e.Expires.After(s.Expires) || e.Seq > SeqAt(ahead) {
			return nil, fmt.Errorf("%w: %w: entry of %s outlives its set or is ahead of the clock", ErrBadRecord, ErrAhead, e.Peer)
		}
		for _, d := range e.Devices {
			if d.Expires.After(e.Expires) || d.Since.After(ahead) {
				return nil, fmt.Errorf("%w: %w: device of %s outlives its entry or registered in the future", ErrBadRecord, ErrAhead, e.Peer)
			}
		}
	}
	if s.Owner == nil && v.Enrollment == nil {
		if len(s.Entries) > 1 || (len(s.Entries) == 1 && s.Entries[0].Peer != s.Writer) {
			return nil, fmt.Errorf("%w: a device set without a user key lists only its writer's devices", ErrBadOwner)
		}
	}
	if v.Enrollment != nil {
		if _, err := v.Enrollment.VerifyCert(s.Cert, aor, s.Writer, now); err != nil {
			return nil, fmt.Errorf("devices of %s, writer %s: %w", s.AOR, s.Writer, err)
		}
		for i := range s.Entries {
			e := &s.Entries[i]
			if _, err := v.Enrollment.VerifyCert(e.Cert, aor, e.Peer, now); err != nil {
				return nil, fmt.Errorf("devices of %s, entry of %s: %w", s.AOR, e.Peer, err)
			}
		}
	}
	return s, nil
}

// OwnerOf returns the owner of s as this validator sees it: "certified" in
// an enrolled domain, the user key if s has one, else its writer.
func (v DeviceSetValidator) OwnerOf(s *DeviceSet) string {
	if v.Enrollment != nil {
		return "certified"
	}
	if s.Owner != nil {
		if raw, err := s.Owner.Raw(); err == nil {
			return "user:" + string(raw)
		}
	}
	return "node:" + string(s.Writer)
}

// Supersedes reports whether set a replaces set b at now. A set of the same
// owner replaces b when its Seq is higher and it keeps every live entry of b
// (at the same or a newer entry Seq) except the writer's own, which the
// writer may drop: so a node that wrote from a stale view cannot remove the
// devices another node added meanwhile (it must read again and merge). A
// set of another owner replaces b only when b has no live device.
func (v DeviceSetValidator) Supersedes(a, b *DeviceSet, now time.Time) bool {
	if v.OwnerOf(a) != v.OwnerOf(b) {
		return a.Live(now) && !b.Live(now)
	}
	if a.Seq <= b.Seq {
		return false
	}
	return keepsEntries(a, b, now)
}

// keepsEntries reports whether a keeps every live entry of b but its
// writer's own.
func keepsEntries(a, b *DeviceSet, now time.Time) bool {
	for i := range b.Entries {
		e := &b.Entries[i]
		if !e.Live(now) || e.Peer == a.Writer {
			continue
		}
		if n := a.Entry(e.Peer); n == nil || n.Seq < e.Seq {
			return false
		}
	}
	return true
}

func (v DeviceSetValidator) supersedesRaw(key string, a, b []byte) bool {
	ra, err1 := v.Open(key, a)
	rb, err2 := v.Open(key, b)
	return err1 == nil && err2 == nil && v.Supersedes(ra, rb, v.now())
}

// Select implements record.Validator with Supersedes, as
// BindingValidator.Select: the later value (the stored one, at a storing
// node) is kept unless another supersedes it. Live sets of different owners
// are reported to OnConflict; sets of the same owner that do not supersede
// each other (two nodes wrote at once) are not a conflict: a lookup merges
// them (MergeDeviceSets).
func (v DeviceSetValidator) Select(key string, values [][]byte) (int, error) {
	now := v.now()
	ss := make([]*DeviceSet, len(values))
	for i, val := range values {
		if s, err := v.Open(key, val); err == nil {
			ss[i] = s
		}
	}
	best := selectBest(len(values), func(i int) bool { return ss[i] != nil },
		func(i, j int) bool { return v.Supersedes(ss[i], ss[j], now) })
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid device set among %d values", ErrBadRecord, len(values))
	}
	for i, s := range ss {
		if s == nil || i == best || bytes.Equal(values[i], values[best]) {
			continue
		}
		if v.OwnerOf(s) != v.OwnerOf(ss[best]) && s.Live(now) && ss[best].Live(now) {
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

// MergeDeviceSets returns what a lookup reports when it saw several valid
// sets of one AOR: the sets of best's owner merged, every node's newest
// live entry once, ordered by peer ID. Entries are signed by their nodes
// and every merged set by the owner, so the merge adds nothing the owner
// did not publish; sets of other owners are left out. The result keeps
// best's Writer, Seq and signatures and is a view, not a record to store.
func (v DeviceSetValidator) MergeDeviceSets(best *DeviceSet, others []*DeviceSet, now time.Time) *DeviceSet {
	out := *best
	out.Entries = nil
	byPeer := map[peer.ID]DeviceEntry{}
	for _, s := range append([]*DeviceSet{best}, others...) {
		if s == nil || v.OwnerOf(s) != v.OwnerOf(best) {
			continue
		}
		for _, e := range s.Entries {
			if !e.Live(now) {
				continue
			}
			if cur, ok := byPeer[e.Peer]; !ok || e.Seq > cur.Seq {
				byPeer[e.Peer] = e
			}
		}
	}
	for _, e := range byPeer {
		out.Entries = append(out.Entries, e)
	}
	slices.SortFunc(out.Entries, func(a, b DeviceEntry) int {
		return bytes.Compare([]byte(a.Peer), []byte(b.Peer))
	})
	if len(out.Entries) > MaxServingNodes {
		out.Entries = out.Entries[:MaxServingNodes]
	}
	return &out
}

// NextDeviceSet returns the set writer stores to put its own entry (mine,
// signed by writer) into cur, the set it last read (nil: none): the other
// nodes' live entries are kept unchanged, writer's entry is replaced by
// mine, or removed when mine is nil. Seq is above cur's and at least
// SeqAt(now). A set left without entries is a tombstone that lives at least
// DeviceTombstone and as long as cur would have. It does not sign the
// owner: call SignOwner (users with a key), then Seal. It returns
// ErrTooManyNodes when the set would exceed the bounds.
func NextDeviceSet(cur *DeviceSet, aor AOR, writer peer.ID, mine *DeviceEntry, now time.Time) (*DeviceSet, error) {
	next := &DeviceSet{AOR: aor.String(), Writer: writer, Seq: SeqAt(now)}
	if cur != nil {
		if cur.Seq >= next.Seq {
			next.Seq = cur.Seq + 1
		}
		for _, e := range cur.Entries {
			if e.Peer != writer && e.Live(now) {
				next.Entries = append(next.Entries, e)
			}
		}
	}
	if mine != nil {
		if mine.Peer != writer {
			return nil, fmt.Errorf("%w: entry of %s written by %s", ErrWrongSigner, mine.Peer, writer)
		}
		next.Entries = append(next.Entries, *mine)
	}
	total := 0
	for _, e := range next.Entries {
		total += len(e.Devices)
		if e.Expires.After(next.Expires) {
			next.Expires = e.Expires
		}
	}
	if len(next.Entries) > MaxServingNodes || total > MaxDevicesPerAOR {
		return nil, fmt.Errorf("%w: %d nodes, %d devices for %s", ErrTooManyNodes, len(next.Entries), total, aor)
	}
	if len(next.Entries) == 0 {
		next.Expires = now.Add(DeviceTombstone)
		if cur != nil && cur.Expires.After(next.Expires) {
			next.Expires = cur.Expires
		}
	}
	return next, nil
}
