package sipbridge

import (
	"fmt"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Bounded registrations and answers that fit the transport.
//
// An AOR holds at most maxContacts contacts, and a REGISTER may name at most that many: a
// REGISTER that names more, or that would leave the AOR with more, is refused whole with
// 403 "Forbidden: too many contacts (at most N)", as Kamailio's max_contacts does, and the
// AOR keeps what it had (refreshing or removing its contacts still works). A domain record
// carries at most domains.MaxContacts (16) contacts, so the cap cannot go above that.
//
// Over UDP, a 200 OK to a REGISTER could be made many times larger than the request (a
// query of an AOR with many contacts): a reflector for spoofed sources. Over UDP the answer
// lists the contacts the REGISTER itself named, then the others, newest first, only while
// it stays within twice the request's size (at least udpAnswerFloor bytes); over TCP it
// lists them all.

// DefaultMaxContacts bounds the contacts of one AOR at a node (WithMaxContacts).
const DefaultMaxContacts = 10

// udpAnswerFloor is the size a REGISTER's answer over UDP may always have.
const udpAnswerFloor = 512

// WithMaxContacts bounds the contacts of one AOR (and of one REGISTER) at this node; n
// between 1 and domains.MaxContacts (16).
func WithMaxContacts(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 16 {
			return fmt.Errorf("%w: max contacts %d: want 1 to 16", ErrBadOption, n)
		}
		c.maxContacts = n
		return nil
	}
}

func (b *Bridge) maxContacts() int {
	if b.cfg.maxContacts == 0 {
		return DefaultMaxContacts
	}
	return b.cfg.maxContacts
}

func (b *Bridge) tooManyContacts() string {
	b.lim.stats.contactsRefused.Add(1)
	return "Forbidden: too many contacts (at most " + strconv.Itoa(b.maxContacts()) + ")"
}

// contactsAfter counts the live contacts e would have after a REGISTER that adds (or
// refreshes) the contact keys adds and removes the keys removes. r.mu is held.
func contactsAfter(e *aorEntry, adds, removes map[string]bool, now time.Time) int {
	n := len(adds)
	for _, c := range e.contacts {
		if c.expires.After(now) && !adds[c.key] && !removes[c.key] {
			n++
		}
	}
	return n
}

// listContacts adds e's live contacts to res, a 200 OK to req: all of them over TCP; over
// UDP those req named (own), then the others newest first while res stays within twice the
// request's size. r.mu is held.
func (b *Bridge) listContacts(req *sip.Request, res *sip.Response, e *aorEntry, own map[string]bool, now time.Time) {
	limited, budget := isUDP(req), 0
	if limited {
		budget = max(2*len(req.String()), udpAnswerFloor) - len(res.String()) - len("Date: Mon, 02 Jan 2006 15:04:05 UTC\r\n")
	}
	var own1, others []*contactEntry
	for i := len(e.contacts) - 1; i >= 0; i-- {
		if c := e.contacts[i]; own[c.key] {
			own1 = append(own1, c)
		} else {
			others = append(others, c)
		}
	}
	for i, c := range append(own1, others...) {
		left := int(c.expires.Sub(now).Round(time.Second) / time.Second)
		if left <= 0 {
			continue
		}
		ch := &sip.ContactHeader{Address: *c.uri.Clone(), Params: sip.NewParams()}
		ch.Params.Add("expires", strconv.Itoa(left))
		b.addGRUU(ch, e.aor, c) // fork.go
		if limited && i >= len(own1) {
			size := len("Contact: \r\n") + len(ch.Value())
			if size > budget {
				break
			}
			budget -= size
		}
		res.AppendHeader(ch)
	}
}
