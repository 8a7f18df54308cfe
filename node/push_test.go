package node

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/hiersip/hiersip/push"
	"github.com/hiersip/hiersip/push/pushtest"
	"github.com/hiersip/hiersip/sipua"
)

// TestPushWakesPhone: alice's phone registered with RFC 8599 push parameters sleeps; carol
// of another domain calls her. Her node posts one notification (type call, the phone's
// token, no caller) to its push gateway; the "phone", woken, registers again, and only
// then gets the INVITE — without the push parameters — and answers, within Timer C.
func TestPushWakesPhone(t *testing.T) {
	var phone atomic.Pointer[sipua.UA]
	var contact sip.Uri
	woken := make(chan struct{}, 4)
	g := pushtest.New(func(push.Body) {
		// The phone wakes up and registers again (not in the gateway's handler).
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := phone.Load().RegisterContact(ctx, contact, time.Hour); err == nil {
				woken <- struct{}{}
			}
		}()
	})
	defer g.Close()
	users := usersLine(t, "alice", "pastry", "alicepw", true)
	ds := startSpecDomains(t,
		domainSpec{name: "pastry", n: 3, users: users, cfg: func(_ host.Host, c *Config) { c.Push.GatewayURL = g.URL }},
		carolsRingo(t))
	p := ds["pastry"]
	carol := carolAt(t, ds)
	ua, err := sipua.NewUA("sip:alice@pastry", p[1].Bridge().UDPAddr(), sipua.WithUALogger(quiet),
		sipua.WithUACredentials("alice", "alicepw"), sipua.WithUAInstance("<urn:uuid:00000000-0000-0000-0000-00000000f00e>"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	phone.Store(ua)
	contact = ua.Contact()
	contact.UriParams = sip.NewParams()
	contact.UriParams.Add("pn-provider", "fcm")
	contact.UriParams.Add("pn-param", "hiersip-test")
	contact.UriParams.Add("pn-prid", "token-of-alices-phone")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := ua.RegisterContact(ctx, contact, time.Hour); err != nil {
		t.Fatal(err)
	}

	var c *sipua.Call
	eventually(t, 45*time.Second, "carol's call reaches the woken phone", func() (err error) {
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		c, err = carol.Call(cctx, "sip:alice@pastry")
		return err
	})
	defer c.Hangup(ctx)
	select {
	case <-woken:
	default:
		t.Fatal("the call was answered without the phone being woken")
	}
	bodies := g.Received()
	if len(bodies) == 0 {
		t.Fatal("the gateway got no notification")
	}
	b := bodies[len(bodies)-1]
	if b.Type != push.TypeCall || b.PRID != "token-of-alices-phone" || b.Provider != "fcm" {
		t.Errorf("notification %+v", b)
	}
	// The INVITE came after the REGISTER the push caused, without push parameters.
	reRegistered, invited := -1, -1
	for i, e := range ua.Ladder() {
		switch {
		case e.Sent && strings.HasPrefix(e.First, "REGISTER "):
			reRegistered = i
		case !e.Sent && strings.HasPrefix(e.First, "INVITE ") && e.CallID == c.CallID:
			invited = i
			if strings.Contains(e.First, "pn-") {
				t.Errorf("push parameters reached the phone: %s", e.First)
			}
		}
	}
	if invited < 0 || reRegistered > invited {
		t.Errorf("INVITE at %d, last REGISTER at %d: the INVITE did not wait for the phone to wake", invited, reRegistered)
	}
}
