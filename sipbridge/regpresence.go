package sipbridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/fork"
	"github.com/hiersip/hiersip/presence"
)

// Presence of devices at other nodes (issue 19). A user's presence home derives her
// presence from the registrations it holds; her devices registered at other nodes of the
// domain would not count. So a node that serves devices of a user whose home is another
// node publishes their registrations there: a PUBLISH on the user's behalf (RFC 3903, as
// one of her phones would), one open PIDF tuple per device, refreshed with each REGISTER
// of hers at this node, and removed when her last device here leaves; it moves when her
// home moves to a third node (not when this node becomes her home: the watchers that
// subscribed earlier stay with the agent they reached until they subscribe again). The node learns the home from the device set it stores for her (the
// Locator's DeviceSetNotifier); the publication lives as long as her devices'
// registrations here, at the node it was made at: it is sent as a branch to that node
// (Hiersip-Fork), so that its refreshes and its removal reach the same agent even after
// the home moved (watchers stay subscribed at the agent they reached).

// DeviceSetNotifier is a DeviceLocator that tells the bridge each device set it stored
// for an AOR (the set as read back from the overlay). A bridge whose Locator implements
// it keeps the presence of the devices it serves at the user's presence home.
type DeviceSetNotifier interface {
	DeviceLocator
	// NotifyDeviceSets makes the locator call f after each device set it stored.
	NotifyDeviceSets(f func(aor domains.AOR, set *domains.DeviceSet))
}

// regPublication is what this node published of its devices of an AOR at its home.
type regPublication struct {
	home  peer.ID
	addrs []ma.Multiaddr
	etag  string
}

// regPresence holds this node's publications by AOR. The updates of one AOR are
// serialised by its stripe lock (held across the PUBLISH); mu guards pubs only.
type regPresence struct {
	stripes [64]sync.Mutex
	mu      sync.Mutex
	pubs    map[string]*regPublication
}

func (rp *regPresence) stripe(aor string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(aor))
	return &rp.stripes[h.Sum32()%uint32(len(rp.stripes))]
}

func (rp *regPresence) get(aor string) *regPublication {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.pubs[aor]
}

// set records p as aor's publication (nil: none).
func (rp *regPresence) set(aor string, p *regPublication) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if p == nil {
		delete(rp.pubs, aor)
		return
	}
	if rp.pubs == nil {
		rp.pubs = map[string]*regPublication{}
	}
	rp.pubs[aor] = p
}

// deviceSetStored is the bridge's DeviceSetNotifier callback: it moves the AOR's
// publication to the set's home. (The set is not cached for forks: another node adds its
// devices after this store, and a fork must find them.)
func (b *Bridge) deviceSetStored(aor domains.AOR, set *domains.DeviceSet) {
	if b.pres == nil {
		return
	}
	var addrs []ma.Multiaddr
	home, ok := fork.Home(set, b.now())
	if ok {
		if e := set.Entry(home); e != nil {
			addrs = e.Addrs
		}
	}
	if (home == "" || home == b.self) && b.pres.regs.get(aor.String()) == nil {
		return // the home is here and nothing was published elsewhere: the common case
	}
	b.spawn(func() { b.publishRegistrations(aor, home, addrs) })
}

// refreshRegistrations re-publishes aor's devices at the home they were published at,
// after a REGISTER changed or refreshed them here.
func (b *Bridge) refreshRegistrations(aor domains.AOR) {
	if p := b.pres.regs.get(aor.String()); p != nil {
		b.spawn(func() { b.publishRegistrations(aor, p.home, p.addrs) })
	}
}

// publishRegistrations publishes this node's live devices of aor at home, or removes
// their publication when none is left.
func (b *Bridge) publishRegistrations(aor domains.AOR, home peer.ID, addrs []ma.Multiaddr) {
	rp := &b.pres.regs
	key := aor.String()
	mu := rp.stripe(key)
	mu.Lock()
	defer mu.Unlock()
	cur := rp.get(key)
	tuples, until := b.deviceTuples(aor)
	if len(tuples) == 0 {
		if cur != nil {
			rp.set(key, nil)
			b.sendRegPublish(aor, cur, nil, 0)
		}
		return
	}
	if cur != nil && (home == "" || home == b.self) {
		home, addrs = cur.home, cur.addrs // the home is here now: its earlier watchers are there
	}
	if home == "" || home == b.self {
		return
	}
	if cur != nil && cur.home != home {
		b.sendRegPublish(aor, cur, nil, 0) // the home moved: withdraw there
		cur = nil
	}
	next := &regPublication{home: home, addrs: addrs}
	if cur != nil {
		next.etag = cur.etag
	}
	expires := max(int(until.Sub(b.now())/time.Second), int(presence.DefaultLimits.MinExpires/time.Second))
	doc, err := (&presence.Presence{Entity: aor.String(), Tuples: tuples}).Marshal()
	if err != nil {
		return
	}
	etag, ok := b.sendRegPublish(aor, next, doc, expires)
	if !ok {
		rp.set(key, nil)
		return
	}
	next.etag = etag
	rp.set(key, next)
}

// deviceTuples returns one open tuple per live device of aor at this node, and until
// when the last of them is registered.
func (b *Bridge) deviceTuples(aor domains.AOR) ([]presence.Tuple, time.Time) {
	now := b.now()
	var ts []presence.Tuple
	var until time.Time
	b.reg.mu.Lock()
	defer b.reg.mu.Unlock()
	if e := b.reg.aors[aor.String()]; e != nil {
		for _, c := range e.contacts {
			if !c.expires.After(now) {
				continue
			}
			id := c.instance
			if id == "" {
				id = c.key
			}
			sum := sha256.Sum256([]byte(b.selfStr + " " + id))
			ts = append(ts, presence.Tuple{ID: "d" + hex.EncodeToString(sum[:8]), Basic: presence.Open})
			if c.expires.After(until) {
				until = c.expires
			}
		}
	}
	return ts, until
}

// sendRegPublish sends p's PUBLISH with doc (nil: a removal) and returns the entity tag
// the home granted; a refresh whose tag the home forgot (412) is published afresh.
func (b *Bridge) sendRegPublish(aor domains.AOR, p *regPublication, doc []byte, expires int) (string, bool) {
	res := b.regPublish(aor, p, doc, expires, p.etag)
	if res != nil && res.StatusCode == 412 && doc != nil {
		res = b.regPublish(aor, p, doc, expires, "")
	}
	if res == nil || !res.IsSuccess() {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		b.log.Debug("publishing registrations at the presence home failed", "aor", aor.String(), "home", p.home, "status", status)
		return "", false
	}
	if h := res.GetHeader("SIP-ETag"); h != nil {
		return strings.TrimSpace(h.Value()), true
	}
	return "", false
}

// regPublish sends one PUBLISH for aor to p's home and returns its final response (nil:
// none).
func (b *Bridge) regPublish(aor domains.AOR, p *regPublication, doc []byte, expires int, ifMatch string) *sip.Response {
	if doc == nil && ifMatch == "" {
		return nil // nothing was granted there: nothing to remove
	}
	req := sip.NewRequest(sip.PUBLISH, aor.URI())
	from := &sip.FromHeader{Address: aor.URI(), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor.URI()})
	cid := sip.CallIDHeader(sip.GenerateTagN(24))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.PUBLISH})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("Event", presence.EventPresence))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	if ifMatch != "" {
		req.AppendHeader(sip.NewHeader("SIP-If-Match", ifMatch))
	}
	if doc != nil {
		req.AppendHeader(sip.NewHeader("Content-Type", presence.ContentTypePIDF))
		req.SetBody(doc)
	}
	f := b.forward(req, decision{hop: hop{peer: p.home, addrs: p.addrs}}, "")
	// Marked as a branch to that node (fork.go): its agent answers, wherever the home
	// has moved since (the watchers' subscriptions stay with the agent they reached).
	f.fwd.AppendHeader(sip.NewHeader(headerFork, "1"))
	path, err := b.pathTo(f.hop)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(b.ctx, 2*b.cfg.locTimeout)
	defer cancel()
	ct, err := b.txl.request(path, f.fwd)
	if err != nil {
		return nil
	}
	defer ct.Terminate()
	return waitFinalResponse(ctx, ct)
}
