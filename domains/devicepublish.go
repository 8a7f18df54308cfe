package domains

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"
)

// LookupDeviceSet looks up the device set of aor in vs (a domain overlay's
// kad-dht, Overlay.DHT(), whose validator has v under NSDeviceSet). Every
// valid set the lookup sees of the owner of the set it settles on is merged
// (DeviceSetValidator.MergeDeviceSets): when two nodes of the user wrote at
// once and storers disagree, the caller still sees both nodes' devices. A
// missing or expired set returns an error wrapping ErrNotFound; a set
// without a live device is returned (a tombstone), check Live.
func LookupDeviceSet(ctx context.Context, vs routing.ValueStore, v DeviceSetValidator, aor AOR) (*DeviceSet, error) {
	_, merged, err := lookupDevices(ctx, vs, v, aor)
	return merged, err
}

// lookupDevices returns the set a lookup settles on and the merged view.
func lookupDevices(ctx context.Context, vs routing.ValueStore, v DeviceSetValidator, aor AOR) (best, merged *DeviceSet, err error) {
	key := DeviceSetKey(aor)
	// kad-dht's lookup goroutines block sending values past the quorum
	// until the context ends: end it when done, or they leak.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := vs.SearchValue(ctx, key, dht.Quorum(DefaultQuorum))
	if err != nil {
		return nil, nil, lookupErr(aor, err)
	}
	var seen []*DeviceSet
	for val := range ch {
		s, err := v.Open(key, val)
		if err != nil {
			continue
		}
		seen = append(seen, s)
	}
	if len(seen) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("devices of %s: %w", aor, err)
		}
		return nil, nil, fmt.Errorf("devices of %s: %w", aor, ErrNotFound)
	}
	best = seen[len(seen)-1] // SearchValue emits ever better values
	return best, v.MergeDeviceSets(best, seen[:len(seen)-1], v.now()), nil
}

func lookupErr(aor AOR, err error) error {
	if errors.Is(err, routing.ErrNotFound) {
		return fmt.Errorf("devices of %s: %w", aor, ErrNotFound)
	}
	return fmt.Errorf("devices of %s: %w", aor, err)
}

// DevicePublish is what a serving node publishes about its devices of one
// AOR (PublishDevices).
type DevicePublish struct {
	AOR     AOR
	NodeKey crypto.PrivKey // the serving node's key (the writer and the entry's signer)
	UserKey crypto.PrivKey // the user's key, nil for a user without one
	Cert    []byte         // enrolled domains: the node's certificate for the AOR
	Addrs   []ma.Multiaddr // the node's addresses (at most MaxEntryAddrs are kept)
	Devices []DeviceRef    // the devices this node serves; none removes its entry
}

// publishRounds bounds the read-merge-write rounds of PublishDevices.
const publishRounds = 4

// PublishDevices puts the node's entry for p.AOR into the AOR's device set:
// it reads the set, keeps every other node's live entry, replaces its own
// (or removes it when p.Devices is empty), signs (entry with the node key,
// set with the user key when there is one), stores, and reads back until
// the set the lookup settles on carries its entry and every entry the
// lookup saw, at most publishRounds times: a write made from a stale view
// while another node added itself is refused by the storers that hold the
// newer set (DeviceSetValidator.Supersedes), and the next round merges it;
// two nodes that write at once leave storers split between their two sets
// (each refuses the other), and their next rounds, carrying the same two
// signed entries, converge. It returns the set read back, or ErrOtherOwner when
// the AOR's live set belongs to another owner (a user key other than
// p.UserKey, or another node for a user without key), ErrTooManyNodes when
// the bounds would be exceeded.
func PublishDevices(ctx context.Context, vs routing.ValueStore, v DeviceSetValidator, p DevicePublish) (*DeviceSet, error) {
	self, err := peer.IDFromPrivateKey(p.NodeKey)
	if err != nil {
		return nil, err
	}
	if len(p.Devices) > MaxDevicesPerNode {
		return nil, fmt.Errorf("%w: %d devices at one node, limit %d", ErrTooManyNodes, len(p.Devices), MaxDevicesPerNode)
	}
	var (
		lastErr error
		mine    *DeviceEntry
	)
	for round := range publishRounds {
		now := v.now()
		cur, err := LookupDeviceSet(ctx, vs, v, p.AOR)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if round == 0 {
			if mine, err = p.entry(cur, self, now); err != nil {
				return nil, err
			}
		}
		next, err := p.next(cur, self, mine, now)
		if err != nil {
			return nil, err
		}
		if cur != nil && cur.Live(now) && v.OwnerOf(cur) != v.OwnerOf(next) {
			if cur.Owner != nil || cur.Writer != self {
				return nil, fmt.Errorf("%w: %s", ErrOtherOwner, p.AOR)
			}
			// This node's own keyless set (the users file has gained a key
			// for the user): withdraw it, then write as the owner.
			if next, err = NextDeviceSet(cur, p.AOR, self, nil, now); err != nil {
				return nil, err
			}
			next.Cert = p.Cert
		}
		sealed, err := next.Seal(p.NodeKey)
		if err != nil {
			return nil, err
		}
		if err := vs.PutValue(ctx, DeviceSetKey(p.AOR), sealed); err != nil {
			lastErr = err // this node holds a set the write does not supersede: read again
			if ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		best, got, err := lookupDevices(ctx, vs, v, p.AOR)
		if err != nil {
			lastErr = err
			continue
		}
		// Done when the set the lookup settled on carries this node's entry
		// and everything the lookup saw: storers that hold sets two nodes
		// wrote at once (each refusing the other's) converge on the next
		// round's merge.
		e := best.Entry(self)
		if ((mine == nil && e == nil) || (mine != nil && e != nil && e.Seq >= mine.Seq)) && covers(best, got) {
			return got, nil
		}
		lastErr = fmt.Errorf("devices of %s: the set read back lacks entries", p.AOR)
	}
	return nil, fmt.Errorf("%w: %w", ErrStaleSet, lastErr)
}

// covers reports whether a holds every entry of b at the same or a newer
// entry sequence number.
func covers(a, b *DeviceSet) bool {
	for i := range b.Entries {
		if e := a.Entry(b.Entries[i].Peer); e == nil || e.Seq < b.Entries[i].Seq {
			return false
		}
	}
	return true
}

// entry returns the node's signed entry for p (nil when it removes
// itself), numbered above its entry in cur. PublishDevices makes it once
// and keeps it through its rounds: two nodes that write at once then
// converge on sets holding the same two entries.
func (p DevicePublish) entry(cur *DeviceSet, self peer.ID, now time.Time) (*DeviceEntry, error) {
	if len(p.Devices) == 0 {
		return nil, nil
	}
	e := DeviceEntry{Peer: self, Devices: slices.Clone(p.Devices), Seq: SeqAt(now), Cert: p.Cert}
	if len(p.Addrs) > MaxEntryAddrs {
		e.Addrs = slices.Clone(p.Addrs[:MaxEntryAddrs])
	} else {
		e.Addrs = slices.Clone(p.Addrs)
	}
	if cur != nil {
		if old := cur.Entry(self); old != nil && old.Seq >= e.Seq {
			e.Seq = old.Seq + 1
		}
	}
	for _, d := range e.Devices {
		if d.Expires.After(e.Expires) {
			e.Expires = d.Expires
		}
	}
	if err := e.SignEntry(p.AOR, p.NodeKey); err != nil {
		return nil, err
	}
	return &e, nil
}

// next builds the set p stores over cur with the node's entry mine.
func (p DevicePublish) next(cur *DeviceSet, self peer.ID, mine *DeviceEntry, now time.Time) (*DeviceSet, error) {
	next, err := NextDeviceSet(cur, p.AOR, self, mine, now)
	if err != nil {
		return nil, err
	}
	next.Cert = p.Cert
	if p.UserKey != nil {
		if err := next.SignOwner(p.UserKey); err != nil {
			return nil, err
		}
	}
	return next, nil
}
