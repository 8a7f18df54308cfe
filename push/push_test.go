package push_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/hiersip/hiersip/push"
	"github.com/hiersip/hiersip/push/pushtest"
	"go.uber.org/goleak"
)

func TestParseContact(t *testing.T) {
	parse := func(s string) *sip.Uri {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			t.Fatal(err)
		}
		return &u
	}
	// A Contact as RFC 8599 §4.1 shows them, and one as Linphone sends it.
	p, ok, err := push.ParseContact(parse("sip:alice@192.0.2.5:5060;transport=tcp;pn-provider=apns;pn-param=DEF123GHIJ.com.example.voip;pn-prid=00fc13adff78512"))
	if err != nil || !ok || p != (push.Params{Provider: "apns", Param: "DEF123GHIJ.com.example.voip", PRID: "00fc13adff78512"}) {
		t.Fatalf("%+v %v %v", p, ok, err)
	}
	p, ok, err = push.ParseContact(parse("sip:alice@10.0.0.3;pn-provider=fcm;pn-prid=cXYZ%3AAPA91b-token_1;pn-purr=1234abcd"))
	if err != nil || !ok || p.PRID != "cXYZ:APA91b-token_1" || p.PURR != "1234abcd" {
		t.Fatalf("%+v %v %v", p, ok, err)
	}
	if _, ok, err := push.ParseContact(parse("sip:alice@10.0.0.3;transport=udp")); ok || err != nil {
		t.Errorf("no push parameters: %v %v", ok, err)
	}
	for _, bad := range []string{
		"sip:a@h;pn-prid=abc",                   // no provider
		"sip:a@h;pn-provider=apns",              // no token
		"sip:a@h;pn-provider=ap%20ns;pn-prid=x", // not a token
		"sip:a@h;pn-provider=apns;pn-prid=" + strings.Repeat("a", push.MaxPRID+1),
		"sip:a@h;pn-provider=apns;pn-prid=%zz",
	} {
		if _, ok, err := push.ParseContact(parse(bad)); !ok || !errors.Is(err, push.ErrBadParams) {
			t.Errorf("%s: %v %v", bad, ok, err)
		}
	}
	u := parse("sip:alice@10.0.0.3;transport=tcp;pn-provider=fcm;pn-prid=t;pn-param=x;pn-purr=y")
	push.Strip(u)
	if u.String() != "sip:alice@10.0.0.3;transport=tcp" {
		t.Errorf("stripped: %s", u.String())
	}
}

var params = push.Params{Provider: "apns", Param: "DEF123GHIJ.com.example.voip", PRID: "00fc13adff78512", PURR: "r1"}

func note(id string, d time.Duration) push.Notification {
	return push.Notification{Params: params, Type: push.TypeCall, ID: id, Expiry: time.Now().Add(d)}
}

func TestClient(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	g := pushtest.New(nil)
	defer g.Close()
	ctx := context.Background()
	c, err := push.NewClient(g.URL, push.WithRetries(2, time.Millisecond), push.WithHeader("Authorization", "Bearer s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Push(ctx, note("w1", time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := g.Received()
	if len(got) != 1 || got[0].V != 1 || got[0].Provider != "apns" || got[0].PRID != params.PRID || got[0].PURR != "r1" ||
		got[0].Type != "call" || got[0].ID != "w1" || got[0].Expires == "" {
		t.Fatalf("gateway got %+v", got)
	}
	// Retried: a 503, a 429, then taken.
	g.Respond(503, 429)
	if err := c.Push(ctx, note("w2", time.Minute)); err != nil || len(g.Received()) != 2 {
		t.Fatalf("after two retries: %v, %d taken", err, len(g.Received()))
	}
	// Gave up after the retries.
	g.Respond(500, 500, 500)
	if err := c.Push(ctx, note("w3", time.Minute)); !errors.Is(err, push.ErrUnavailable) {
		t.Errorf("three 500s: %v", err)
	}
	g.Respond(410)
	if err := c.Push(ctx, note("w4", time.Minute)); !errors.Is(err, push.ErrInvalidToken) {
		t.Errorf("410: %v", err)
	}
	g.Respond(403)
	if err := c.Push(ctx, note("w5", time.Minute)); !errors.Is(err, push.ErrRejected) {
		t.Errorf("403: %v", err)
	}
	if err := c.Push(ctx, push.Notification{Params: push.Params{Provider: "apns"}}); !errors.Is(err, push.ErrBadParams) {
		t.Errorf("no token: %v", err)
	}
}

// TestClientTimeout: a gateway that does not answer costs one attempt's
// timeout per try, and never more than the notification's expiry.
func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	c, err := push.NewClient(slow.URL, push.WithTimeout(50*time.Millisecond), push.WithRetries(1, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Push(context.Background(), note("t1", time.Minute)); !errors.Is(err, push.ErrUnavailable) {
		t.Errorf("%v", err)
	}
	if hits.Load() != 2 || time.Since(start) > 5*time.Second {
		t.Errorf("%d attempts in %v", hits.Load(), time.Since(start))
	}
	if err := c.Push(context.Background(), note("t2", 30*time.Millisecond)); err == nil {
		t.Error("a push past its expiry succeeded")
	}
}

func TestClientBounds(t *testing.T) {
	for _, u := range []string{"ftp://gw.example/push", "http://gw.example/push", "http://192.0.2.1/push", "push", ""} {
		if _, err := push.NewClient(u); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	for _, u := range []string{"https://gw.example/push", "http://127.0.0.1:8080/push", "http://[::1]/p", "http://localhost/p"} {
		if _, err := push.NewClient(u); err != nil {
			t.Errorf("%q: %v", u, err)
		}
	}
	block := make(chan struct{})
	var hits atomic.Int32
	g := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer g.Close()
	defer close(block)
	c, _ := push.NewClient(g.URL, push.WithMaxInFlight(1))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Push(ctx, note("b1", time.Minute)) })
	for hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := c.Push(context.Background(), note("b2", time.Minute)); !errors.Is(err, push.ErrBusy) {
		t.Errorf("a second push in flight: %v", err)
	}
	cancel()
	wg.Wait()
}

// TestWaiter: a call to a sleeping phone pushes it once, whatever the
// number of callers, and returns when it registers again; a phone that
// does not wake lets the call go on within its deadline (Timer C).
func TestWaiter(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var w *push.Waiter
	key := push.DeviceKey("sip:alice@pastry", "<urn:uuid:phone>", params)
	// The "phone": woken by the gateway, it registers again 20 ms later.
	g := pushtest.New(func(b push.Body) {
		time.Sleep(20 * time.Millisecond)
		w.Registered(key)
	})
	defer g.Close()
	c, _ := push.NewClient(g.URL)
	var err error
	if w, err = push.NewWaiter(c, 0); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = w.Wake(ctx, key, note("call-1", 10*time.Second)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if n := len(g.Received()); n != 1 {
		t.Errorf("%d pushes for one device", n)
	}
	if w.Waking() != 0 {
		t.Errorf("%d wakes left", w.Waking())
	}

	// A phone that never wakes.
	asleep := push.DeviceKey("sip:bob@pastry", "", params)
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := w.Wake(short, asleep, note("call-2", time.Second)); !errors.Is(err, push.ErrNotWoken) {
		t.Errorf("a phone that stays asleep: %v", err)
	}
	if w.Waking() != 0 {
		t.Errorf("a wake nobody waits for is kept")
	}
	// A token the service no longer knows.
	g.Respond(410)
	if err := w.Wake(ctx, push.DeviceKey("sip:carol@pastry", "", params), note("call-3", time.Second)); !errors.Is(err, push.ErrInvalidToken) {
		t.Errorf("invalid token: %v", err)
	}
}

func TestWaiterBoundsAndClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	block := make(chan struct{})
	g := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer g.Close()
	defer close(block)
	c, _ := push.NewClient(g.URL, push.WithRetries(0, time.Millisecond))
	w, _ := push.NewWaiter(c, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() { first <- w.Wake(ctx, "d1", note("x", 10*time.Second)) }()
	for w.Waking() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := w.Wake(ctx, "d2", note("y", 10*time.Second)); !errors.Is(err, push.ErrBusy) {
		t.Errorf("over the bound: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-first; !errors.Is(err, net.ErrClosed) && !errors.Is(err, push.ErrClosed) {
		t.Errorf("a wake at Close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Wake(ctx, "d3", note("z", time.Second)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Wake after Close: %v", err)
	}
}
