package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/benbjohnson/clock"
)

// Errors of the push client.
var (
	ErrInvalidToken = errors.New("push: the gateway says the device's token is no longer valid")
	ErrRejected     = errors.New("push: the gateway refused the notification")
	ErrUnavailable  = errors.New("push: the gateway did not take the notification")
	ErrBusy         = errors.New("push: too many notifications in flight")
	ErrClosed       = fmt.Errorf("push: closed: %w", net.ErrClosed)
)

// Types of notification.
const (
	TypeCall    = "call"    // an INVITE waits for the device
	TypeMessage = "message" // a MESSAGE (or another request) waits
	TypeRefresh = "refresh" // the registration is about to lapse: register again (RFC 8599 §5.4)
)

// Notification is what a node asks the gateway to push to a device.
type Notification struct {
	Params Params
	Type   string    // TypeCall, TypeMessage, TypeRefresh
	ID     string    // the node's ID of this wake-up, for logs and deduplication at the gateway
	Expiry time.Time // the push is useless after this (Timer C of the call)
}

// Body is the JSON body the client POSTs to the gateway (version 1):
//
//	{"v":1,"provider":"apns","param":"ABCD1234.org.example.voip","prid":"…",
//	 "purr":"…","type":"call","id":"…","expires":"2026-11-24T12:03:00Z"}
//
// provider, param, prid and purr are the device's RFC 8599 parameters as it
// registered them; type is "call", "message" or "refresh"; id names the
// wake-up; expires (RFC 3339) is when delivering it stops making sense.
// Nothing else: not the caller, not the AOR, not the node's address — the
// gateway and the push service learn that the device is wanted, not by
// whom. The gateway answers 2xx when it took the notification, 404 or 410
// when the token is no longer valid (the device uninstalled the app), 429
// or 5xx (optionally with Retry-After) to have it retried, another 4xx to
// refuse it.
type Body struct {
	V        int    `json:"v"`
	Provider string `json:"provider"`
	Param    string `json:"param,omitempty"`
	PRID     string `json:"prid"`
	PURR     string `json:"purr,omitempty"`
	Type     string `json:"type"`
	ID       string `json:"id"`
	Expires  string `json:"expires"`
}

// Option configures a Client.
type Option func(*config) error

type config struct {
	hc       *http.Client
	timeout  time.Duration
	retries  int
	backoff  time.Duration
	header   http.Header
	inFlight int
	log      *slog.Logger
	clock    clock.Clock
}

// WithClock sets the clock the retries wait on (default the wall clock,
// clock.New()).
func WithClock(clk clock.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return errors.New("push: WithClock: nil clock")
		}
		c.clock = clk
		return nil
	}
}

// WithHTTPClient sets the HTTP client (default: a client of its own, with
// no overall timeout: every attempt has WithTimeout).
func WithHTTPClient(c *http.Client) Option {
	return func(cfg *config) error {
		if c == nil {
			return errors.New("push: WithHTTPClient: nil")
		}
		cfg.hc = c
		return nil
	}
}

// WithTimeout bounds one attempt (default 5 s).
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("push: WithTimeout: %v", d)
		}
		c.timeout = d
		return nil
	}
}

// WithRetries sets how many times a notification the gateway did not take
// (network error, 429, 5xx) is tried again (default 2), the first after
// backoff, then doubling (default 500 ms), never past the notification's
// expiry.
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *config) error {
		if n < 0 || n > 10 || backoff <= 0 {
			return fmt.Errorf("push: WithRetries: %d, %v", n, backoff)
		}
		c.retries, c.backoff = n, backoff
		return nil
	}
}

// WithHeader adds a header to every request (e.g. the gateway's
// Authorization).
func WithHeader(name, value string) Option {
	return func(c *config) error {
		c.header.Add(name, value)
		return nil
	}
}

// WithMaxInFlight bounds the notifications being posted at once (default
// 64); more get ErrBusy.
func WithMaxInFlight(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("push: WithMaxInFlight: %d", n)
		}
		c.inFlight = n
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("push: WithLogger: nil")
		}
		c.log = l
		return nil
	}
}

// Client posts notifications to a push gateway: the node's configured URL
// of a service that holds the credentials of the push services (APNs, FCM,
// web push) and forwards to them. It is safe for concurrent use and holds
// no goroutines.
type Client struct {
	url string
	cfg config
	sem chan struct{}
}

// NewClient returns a client of the gateway at gatewayURL: https, or http
// to a loopback address (a gateway on the same host; tests).
func NewClient(gatewayURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(gatewayURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("push: gateway URL %q: not an absolute URL", gatewayURL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("push: gateway URL %q: plain http only to a loopback address (the body carries device tokens)", gatewayURL)
		}
	default:
		return nil, fmt.Errorf("push: gateway URL %q: scheme %q", gatewayURL, u.Scheme)
	}
	cfg := config{hc: &http.Client{}, timeout: 5 * time.Second, retries: 2, backoff: 500 * time.Millisecond,
		header: http.Header{}, inFlight: 64, log: slog.New(slog.DiscardHandler), clock: clock.New()}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &Client{url: gatewayURL, cfg: cfg, sem: make(chan struct{}, cfg.inFlight)}, nil
}

// Push posts n to the gateway, trying again as WithRetries says, and
// returns nil once the gateway took it; ErrInvalidToken, ErrRejected or
// ErrUnavailable (wrapped with the detail) otherwise, or the context's
// error.
func (c *Client) Push(ctx context.Context, n Notification) error {
	if err := n.Params.Validate(); err != nil {
		return err
	}
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	default:
		return ErrBusy
	}
	if !n.Expiry.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, n.Expiry)
		defer cancel()
	}
	body, err := json.Marshal(Body{V: 1, Provider: n.Params.Provider, Param: n.Params.Param, PRID: n.Params.PRID,
		PURR: n.Params.PURR, Type: n.Type, ID: n.ID, Expires: n.Expiry.UTC().Format(time.RFC3339)})
	if err != nil {
		return err
	}
	wait := c.cfg.backoff
	var last error
	for attempt := 0; ; attempt++ {
		retryAfter, err := c.post(ctx, body)
		if err == nil {
			return nil
		}
		last = err
		if !errors.Is(err, ErrUnavailable) || attempt >= c.cfg.retries {
			break
		}
		d := max(wait, retryAfter)
		wait *= 2
		c.cfg.log.Debug("push: retrying", "id", n.ID, "in", d, "err", err)
		t := c.cfg.clock.Timer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %w)", ctx.Err(), last)
		case <-t.C:
		}
	}
	return last
}

// post makes one attempt; it returns the gateway's Retry-After, if any.
func (c *Client) post(ctx context.Context, body []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	for k, vs := range c.cfg.header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.cfg.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4<<10))
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return 0, nil
	case res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusGone:
		return 0, fmt.Errorf("%w: %s", ErrInvalidToken, res.Status)
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		var ra time.Duration
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
			ra = min(time.Duration(s)*time.Second, time.Minute)
		}
		return ra, fmt.Errorf("%w: %s", ErrUnavailable, res.Status)
	default:
		return 0, fmt.Errorf("%w: %s", ErrRejected, res.Status)
	}
}
