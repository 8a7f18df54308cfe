package sipbridge

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/emiago/sipgo/sip"
)

// A request from another node whose next hop is a SIP URI with an address (a
// contact: the last hop of an in-dialog request) is only sent on when that
// address belongs to one of this node's own user agents: a contact registered
// here, or the Contact of a request or response a local UA sent through this
// node. Otherwise any peer could make the node send SIP to any host and port
// (a reflector, an open relay); such requests get 403.

// uaAddrs remembers the contact addresses (host:port) of the node's local user
// agents, seen in their requests and responses, for uaAddrTTL. It is bounded.
type uaAddrs struct {
	mu    sync.Mutex
	m     map[string]time.Time
	clock clock.Clock // the bridge's (WithClock)
}

const (
	uaAddrTTL = 12 * time.Hour
	uaAddrMax = 4096
)

func (a *uaAddrs) note(m interface{ Contact() *sip.ContactHeader }) {
	if c := m.Contact(); c != nil {
		var buf [64]byte
		a.noteKey(appendAddrKey(buf[:0], &c.Address))
	}
}

// noteKey is noteAddr for a key in a buffer: a key noted in the last minute is not
// noted again (no string is made for it).
func (a *uaAddrs) noteKey(key []byte) {
	if len(key) == 0 {
		return
	}
	a.mu.Lock()
	at, ok := a.m[string(key)]
	a.mu.Unlock()
	if ok && a.clock.Since(at) < time.Minute {
		return
	}
	a.noteAddr(string(key))
}

// noteAddr remembers key ("host:port", as uriAddrKey makes it).
func (a *uaAddrs) noteAddr(key string) {
	if key == "" {
		return
	}
	now := a.clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]time.Time{}
	}
	if _, ok := a.m[key]; !ok && len(a.m) >= uaAddrMax {
		for k, at := range a.m {
			if now.Sub(at) > uaAddrTTL {
				delete(a.m, k)
			}
		}
		if len(a.m) >= uaAddrMax {
			return
		}
	}
	a.m[key] = now
}

func (a *uaAddrs) has(u *sip.Uri) bool {
	var buf [64]byte
	key := appendAddrKey(buf[:0], u)
	if len(key) == 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.m[string(key)]
	return ok && a.clock.Since(at) <= uaAddrTTL
}

// uriAddrKey is "host:port" of u, host lower-cased, the port defaulted.
func uriAddrKey(u *sip.Uri) string {
	var buf [64]byte
	return string(appendAddrKey(buf[:0], u))
}

// appendAddrKey appends uriAddrKey(u) to dst (map lookups with it make no string).
func appendAddrKey(dst []byte, u *sip.Uri) []byte {
	if u == nil || u.Host == "" {
		return dst
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if u.IsEncrypted() {
			port = 5061
		}
	}
	h := normHost(u.Host)
	if strings.IndexByte(h, ':') >= 0 {
		dst = append(append(append(dst, '['), h...), ']')
	} else {
		dst = append(dst, h...)
	}
	dst = append(dst, ':')
	return strconv.AppendInt(dst, int64(port), 10)
}

// localUA reports whether u addresses one of this node's user agents.
func (b *Bridge) localUA(u *sip.Uri) bool {
	return b.reg.servesAddr(u) || b.uas.has(u)
}

const notLocalUAReason = "Forbidden: not a user agent of this node"
