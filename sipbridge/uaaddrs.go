package sipbridge

import (
	"net"
	"strconv"
	"sync"
	"time"

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
	mu sync.Mutex
	m  map[string]time.Time
}

const (
	uaAddrTTL = 12 * time.Hour
	uaAddrMax = 4096
)

func (a *uaAddrs) note(m interface{ Contact() *sip.ContactHeader }) {
	if c := m.Contact(); c != nil {
		a.noteAddr(uriAddrKey(&c.Address))
	}
}

// noteAddr remembers key ("host:port", as uriAddrKey makes it).
func (a *uaAddrs) noteAddr(key string) {
	if key == "" {
		return
	}
	now := time.Now()
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
	key := uriAddrKey(u)
	if key == "" {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.m[key]
	return ok && time.Since(at) <= uaAddrTTL
}

// uriAddrKey is "host:port" of u, host lower-cased, the port defaulted.
func uriAddrKey(u *sip.Uri) string {
	if u == nil || u.Host == "" {
		return ""
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if u.IsEncrypted() {
			port = 5061
		}
	}
	return net.JoinHostPort(normHost(u.Host), strconv.Itoa(port))
}

// localUA reports whether u addresses one of this node's user agents.
func (b *Bridge) localUA(u *sip.Uri) bool {
	return b.reg.servesAddr(u) || b.uas.has(u)
}

const notLocalUAReason = "Forbidden: not a user agent of this node"
