package sipua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/domains"
)

// ErrUAClosed is returned by a UA after Close.
var ErrUAClosed = fmt.Errorf("sipua: user agent closed: %w", net.ErrClosed)

// UA is hiersip's own SIP user agent: it registers an AOR with a node, places and answers
// calls (sipgo dialogs), sends BYE and MESSAGE. It talks UDP to its node (outbound proxy)
// and records every message it sends or receives with a timestamp (Ladder).
type UA struct {
	aor     domains.AOR
	proxy   string
	cfg     uaConfig
	log     *slog.Logger
	conn    *recordingConn
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cli     *sipgo.Client
	contact sip.ContactHeader
	dcc     *sipgo.DialogClientCache
	dsc     *sipgo.DialogServerCache
	laddr   sip.Addr

	incoming chan *Call
	messages chan Message
	notifies chan Notify
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	closed   bool
	regCSeq  uint32
	regCall  string
	gruu     string
	calls    map[string]*Call // calls with media, by Call-ID (uamedia.go)
}

// AnswerMode says what a UA does with an incoming INVITE.
type AnswerMode int

const (
	// AnswerAuto rings (180) and answers (200) at once, or after the ring delay.
	AnswerAuto AnswerMode = iota
	// AnswerRingOnly rings and never answers (the caller cancels or gives up).
	AnswerRingOnly
	// AnswerBusy answers 486 Busy Here.
	AnswerBusy
)

type uaConfig struct {
	listen   string
	log      *slog.Logger
	user     string
	password string
	mode     AnswerMode
	ring     time.Duration
	expires  time.Duration
	// media (uamedia.go)
	video, lateOffer, earlyMedia bool
	silent                       bool
	sdpPortOffset                int // WithUASDPPortOffset
	instance                     string
	refuseMessages               bool // WithUARefuseMessages
}

// WithUARefuseMessages makes the UA answer every MESSAGE 415 Unsupported Media Type,
// as a phone without text messaging does.
func WithUARefuseMessages() UAOption {
	return func(c *uaConfig) error { c.refuseMessages = true; return nil }
}

// WithUAInstance makes the UA register as the device instance (RFC 5626
// +sip.instance, e.g. "<urn:uuid:…>"): one of several devices of its AOR,
// reachable by its public GRUU (RFC 5627; see GRUU).
func WithUAInstance(instance string) UAOption {
	return func(c *uaConfig) error { c.instance = instance; return nil }
}

// UAOption configures a UA.
type UAOption func(*uaConfig) error

// WithUAListen sets the UA's UDP address (default 127.0.0.1:0).
func WithUAListen(addr string) UAOption {
	return func(c *uaConfig) error { c.listen = addr; return nil }
}

// WithUALogger sets the UA's logger (default: discard).
func WithUALogger(l *slog.Logger) UAOption {
	return func(c *uaConfig) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrBadOption)
		}
		c.log = l
		return nil
	}
}

// WithUACredentials sets the digest credentials used when the node challenges.
func WithUACredentials(user, password string) UAOption {
	return func(c *uaConfig) error { c.user, c.password = user, password; return nil }
}

// WithUAAnswer sets how incoming calls are answered and how long the UA rings first.
func WithUAAnswer(mode AnswerMode, ring time.Duration) UAOption {
	return func(c *uaConfig) error { c.mode, c.ring = mode, ring; return nil }
}

// WithUAExpires sets the registration interval requested (default 1 h).
func WithUAExpires(d time.Duration) UAOption {
	return func(c *uaConfig) error { c.expires = d; return nil }
}

// WithUAVideo makes the UA's calls offer a video stream besides audio.
func WithUAVideo() UAOption { return func(c *uaConfig) error { c.video = true; return nil } }

// WithUALateOffer makes the UA's INVITEs carry no SDP: the callee offers in its 2xx and
// the UA answers in the ACK.
func WithUALateOffer() UAOption { return func(c *uaConfig) error { c.lateOffer = true; return nil } }

// WithUAEarlyMedia makes the UA answer incoming calls with 183 Session Progress and its
// SDP, and send media, before it rings out and answers.
func WithUAEarlyMedia() UAOption { return func(c *uaConfig) error { c.earlyMedia = true; return nil } }

// WithUASilent makes the UA negotiate media as usual (its SDP names RTP ports of its
// own) but send and read no RTP: for load generators that drive RTP themselves.
func WithUASilent() UAOption { return func(c *uaConfig) error { c.silent = true; return nil } }

// WithUASDPPortOffset makes the UA's SDP name RTP ports n above those it sends and
// receives on, as a phone behind a NAT on its LAN would: for tests of media latching.
func WithUASDPPortOffset(n int) UAOption {
	return func(c *uaConfig) error { c.sdpPortOffset = n; return nil }
}

// Notify is a NOTIFY received by a UA (see Subscribe).
type Notify struct {
	Event       string // the Event header
	State       string // the Subscription-State header
	ContentType string
	Body        []byte
	Source      string // the address it came from
	At          time.Time
}

// Notifies returns the NOTIFYs the UA received (each answered 200).
func (u *UA) Notifies() <-chan Notify { return u.notifies }

func (u *UA) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	n := Notify{Body: append([]byte(nil), req.Body()...), Source: req.Source(), At: time.Now()}
	if h := req.GetHeader("Event"); h != nil {
		n.Event = h.Value()
	}
	if h := req.GetHeader("Subscription-State"); h != nil {
		n.State = h.Value()
	}
	if h := req.ContentType(); h != nil {
		n.ContentType = h.Value()
	}
	select {
	case u.notifies <- n:
	default:
		u.log.Warn("notify queue full")
	}
}

// Subscribe sends a SUBSCRIBE for event (presence, reg, message-summary) to target through
// the node and returns the final response; the NOTIFYs arrive on Notifies. A digest
// challenge is answered with the UA's credentials.
func (u *UA) Subscribe(ctx context.Context, target, event string, expires time.Duration) (*sip.Response, error) {
	var tu sip.Uri
	if err := sip.ParseUri(target, &tu); err != nil {
		return nil, fmt.Errorf("%w: target %q: %w", ErrBadOption, target, err)
	}
	req := sip.NewRequest(sip.SUBSCRIBE, tu)
	req.AppendHeader(&sip.ToHeader{Address: *tu.Clone()})
	from := &sip.FromHeader{Address: u.aor.URI(), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ContactHeader{Address: *u.contact.Address.Clone()})
	req.AppendHeader(sip.NewHeader("Event", event))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	return u.doAuth(ctx, req)
}

// Publish sends a PUBLISH of event state (RFC 3903) for the UA's own AOR; etag, when set,
// refreshes or modifies that publication (SIP-If-Match). It returns the final response
// (its SIP-ETag names the publication).
func (u *UA) Publish(ctx context.Context, event, etag, contentType string, body []byte, expires time.Duration) (*sip.Response, error) {
	req := sip.NewRequest(sip.PUBLISH, u.aor.URI())
	req.AppendHeader(&sip.ToHeader{Address: u.aor.URI()})
	from := &sip.FromHeader{Address: u.aor.URI(), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(sip.NewHeader("Event", event))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	if etag != "" {
		req.AppendHeader(sip.NewHeader("SIP-If-Match", etag))
	}
	if contentType != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", contentType))
	}
	req.SetBody(body)
	return u.doAuth(ctx, req)
}

// doAuth sends req and answers a digest challenge once.
func (u *UA) doAuth(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	u.outbound(req)
	res, err := u.cli.Do(ctx, req)
	if err == nil && (res.StatusCode == 401 || res.StatusCode == 407) && u.cfg.password != "" {
		res, err = u.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: u.cfg.user, Password: u.cfg.password})
	}
	return res, err
}

// Message is a MESSAGE received by a UA.
type Message struct {
	From string
	Body []byte
	At   time.Time
}

// LadderEntry is one message sent or received by a UA.
type LadderEntry struct {
	At     time.Time
	Sent   bool   // true: sent by this UA; false: received
	Peer   string // the remote address
	First  string // request or status line
	CallID string
	CSeq   string
}

func (e LadderEntry) String() string {
	dir := "<-"
	if e.Sent {
		dir = "->"
	}
	return fmt.Sprintf("%s %s %s %s (%s)", e.At.Format("15:04:05.000000"), dir, e.Peer, e.First, e.CSeq)
}

// NewUA creates a user agent for aor (e.g. "sip:alice@pastry") whose outbound proxy and
// registrar is the node at proxy ("host:port", UDP), and starts listening.
func NewUA(aor, proxy string, opts ...UAOption) (*UA, error) {
	a, err := domains.ParseAOR(aor)
	if err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(proxy); err != nil {
		return nil, fmt.Errorf("%w: proxy address: %w", ErrBadOption, err)
	}
	cfg := uaConfig{listen: "127.0.0.1:0", log: slog.New(slog.DiscardHandler), expires: time.Hour}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.user == "" {
		cfg.user = a.User
	}
	u := &UA{aor: a, proxy: proxy, cfg: cfg, log: cfg.log.With("component", "ua", "aor", a.String()),
		incoming: make(chan *Call, 64), messages: make(chan Message, 64), notifies: make(chan Notify, 64), regCall: sip.GenerateTagN(20),
		calls: map[string]*Call{}}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	pc, err := net.ListenPacket("udp", cfg.listen)
	if err != nil {
		return nil, fmt.Errorf("sipua: ua listen: %w", err)
	}
	u.conn = &recordingConn{PacketConn: pc}
	la := pc.LocalAddr().(*net.UDPAddr)
	u.laddr = sip.Addr{IP: la.IP, Port: la.Port}
	u.ua, err = sipgo.NewUA(sipgo.WithUserAgent(a.User), sipgo.WithUserAgentHostname(a.Host),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(u.log),
			sip.WithTransactionLayerUnhandledResponseHandler(func(res *sip.Response) {
				u.log.Debug("unmatched response", "status", res.StatusCode)
			})),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(u.log)))
	if err == nil {
		u.srv, err = sipgo.NewServer(u.ua, sipgo.WithServerLogger(u.log))
	}
	if err == nil {
		u.cli, err = sipgo.NewClient(u.ua, sipgo.WithClientLogger(u.log), sipgo.WithClientHostname(la.IP.String()),
			sipgo.WithClientConnectionAddr(pc.LocalAddr().String()))
	}
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	u.contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: a.User, Host: la.IP.String(), Port: la.Port}}
	u.dcc = sipgo.NewDialogClientCache(u.cli, u.contact)
	u.dsc = sipgo.NewDialogServerCache(u.cli, u.contact)
	u.srv.OnInvite(u.onInvite)
	u.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = u.dsc.ReadAck(req, tx)
		u.onAckSDP(req)
	})
	u.srv.OnBye(u.onBye)
	u.srv.OnMessage(u.onMessage)
	u.srv.OnNotify(u.onNotify)
	u.srv.OnRequest(sip.INFO, func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	u.srv.OnRequest(sip.UPDATE, u.onUpdate)
	u.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	u.wg.Add(1)
	go func() { defer u.wg.Done(); _ = u.srv.ServeUDP(u.conn) }()
	if err := waitUDPListener(u.ua.TransportLayer(), pc.LocalAddr().String()); err != nil {
		_ = u.Close()
		return nil, err
	}
	return u, nil
}

// AOR is the UA's address-of-record.
func (u *UA) AOR() domains.AOR { return u.aor }

// Contact is the UA's contact URI.
func (u *UA) Contact() sip.Uri { return *u.contact.Address.Clone() }

// Close stops the UA. A second Close returns an error wrapping net.ErrClosed.
func (u *UA) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return ErrUAClosed
	}
	u.closed = true
	u.mu.Unlock()
	u.cancel()
	err := u.ua.Close()
	_ = u.conn.Close()
	u.stopMedia()
	u.wg.Wait()
	return err
}

// Ladder returns the messages sent and received so far, in order.
func (u *UA) Ladder() []LadderEntry { return u.conn.entries() }

// Incoming delivers the calls this UA answered.
func (u *UA) Incoming() <-chan *Call { return u.incoming }

// Messages delivers the MESSAGE requests this UA received.
func (u *UA) Messages() <-chan Message { return u.messages }

func (u *UA) outbound(req *sip.Request) {
	req.SetDestination(u.proxy)
	req.SetTransport("UDP")
	req.Laddr = u.laddr
}

// Register registers the UA's own contact for expires (0: the UA's default); it returns the 200 OK.
func (u *UA) Register(ctx context.Context, expires time.Duration) (*sip.Response, error) {
	if expires == 0 {
		expires = u.cfg.expires
	}
	return u.RegisterContact(ctx, u.contact.Address, expires)
}

// Unregister removes the UA's own contact.
func (u *UA) Unregister(ctx context.Context) (*sip.Response, error) {
	return u.RegisterContact(ctx, u.contact.Address, -1)
}

// Query sends a REGISTER without Contact: the 200 OK lists the AOR's current contacts.
func (u *UA) Query(ctx context.Context) (*sip.Response, error) {
	return u.register(ctx, nil, 0, false)
}

// UnregisterAll removes every contact of the UA's AOR (Contact: * with Expires: 0).
func (u *UA) UnregisterAll(ctx context.Context) (*sip.Response, error) {
	return u.register(ctx, nil, 0, true)
}

// RegisterContact registers contact for the UA's AOR (on behalf of another agent, such as
// sipp); expires < 0 removes it. A non-2xx final answer is returned as an error.
func (u *UA) RegisterContact(ctx context.Context, contact sip.Uri, expires time.Duration) (*sip.Response, error) {
	return u.register(ctx, &contact, expires, false)
}

func (u *UA) register(ctx context.Context, contact *sip.Uri, expires time.Duration, wildcard bool) (*sip.Response, error) {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: u.aor.Host})
	to := &sip.ToHeader{Address: u.aor.URI()}
	from := &sip.FromHeader{Address: u.aor.URI(), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(to)
	req.AppendHeader(from)
	cid := sip.CallIDHeader(u.regCall)
	req.AppendHeader(&cid)
	u.mu.Lock()
	u.regCSeq++
	req.AppendHeader(&sip.CSeqHeader{SeqNo: u.regCSeq, MethodName: sip.REGISTER})
	u.mu.Unlock()
	switch {
	case wildcard:
		req.AppendHeader(sip.NewHeader("Contact", "*"))
		req.AppendHeader(sip.NewHeader("Expires", "0"))
	case contact != nil:
		ch := &sip.ContactHeader{Address: *contact.Clone(), Params: sip.NewParams()}
		if u.cfg.instance != "" {
			ch.Params.Add("+sip.instance", `"`+u.cfg.instance+`"`)
			req.AppendHeader(sip.NewHeader("Supported", "gruu"))
		}
		req.AppendHeader(ch)
		secs := int(expires / time.Second)
		if expires < 0 {
			secs = 0
		}
		req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(secs)))
	}
	u.outbound(req)
	res, err := u.cli.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode == 401 && u.cfg.password != "" {
		u.mu.Lock()
		u.regCSeq++
		req.CSeq().SeqNo = u.regCSeq
		u.mu.Unlock()
		req.RemoveHeader("Via")
		res, err = u.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: u.cfg.user, Password: u.cfg.password})
		if err != nil {
			return nil, err
		}
	}
	if res.StatusCode != 200 {
		return res, fmt.Errorf("sipua: register %s: %d %s", u.aor, res.StatusCode, res.Reason)
	}
	if u.cfg.instance != "" {
		for _, h := range res.GetHeaders("Contact") {
			if ch, ok := h.(*sip.ContactHeader); ok {
				if g := quotedParam(ch.Params, "pub-gruu"); g != "" && contact != nil && ch.Address.Port == contact.Port {
					u.mu.Lock()
					u.gruu = g
					u.mu.Unlock()
				}
			}
		}
	}
	return res, nil
}

// quotedParam returns the value of parameter name without its quotes. sipgo splits a
// quoted value at its semicolons (pub-gruu="sip:a@b;gr=urn:…"): the parts are joined again.
func quotedParam(ps sip.HeaderParams, name string) string {
	for i, kv := range ps {
		if !strings.EqualFold(kv.K, name) {
			continue
		}
		v := kv.V
		for j := i + 1; strings.HasPrefix(v, `"`) && !strings.HasSuffix(v[1:], `"`) && j < len(ps); j++ {
			v += ";" + ps[j].K
			if ps[j].V != "" {
				v += "=" + ps[j].V
			}
		}
		return strings.Trim(v, `"`)
	}
	return ""
}

// GRUU returns the public GRUU (RFC 5627) the UA's node gave its device in
// the last 200 to REGISTER, "" if none (WithUAInstance).
func (u *UA) GRUU() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.gruu
}

// Call is one dialog of a UA, placed or answered.
type Call struct {
	ua       *UA
	Outgoing bool
	Remote   string
	CallID   string
	cs       *sipgo.DialogClientSession
	ss       *sipgo.DialogServerSession
	// Responses are the responses to the INVITE this UA placed, in arrival order.
	Responses []*sip.Response
	// Invite is the INVITE this UA received (answered calls only).
	Invite *sip.Request
	media  *callMedia
	watch  sync.Once
}

// InviteResponse is the last response to the INVITE of a call this UA placed (nil for an
// answered call): after a cancelled call, the 487.
func (c *Call) InviteResponse() *sip.Response {
	if c.cs == nil {
		return nil
	}
	return c.cs.InviteResponse
}

// Done is closed when the dialog ends (BYE sent or received).
func (c *Call) Done() <-chan struct{} {
	if c.cs != nil {
		return c.cs.Context().Done()
	}
	return c.ss.Context().Done()
}

// Hangup sends BYE.
func (c *Call) Hangup(ctx context.Context) error {
	c.media.stop()
	if c.cs != nil {
		defer c.cs.Close()
		return c.cs.Bye(ctx)
	}
	defer c.ss.Close()
	return c.ss.Bye(ctx)
}

// Request sends an in-dialog request (INFO, UPDATE, MESSAGE, OPTIONS…) and returns the final
// response. The request follows the dialog's route set: node to node, without a lookup.
func (c *Call) Request(ctx context.Context, method sip.RequestMethod, contentType string, body []byte) (*sip.Response, error) {
	if method == sip.INVITE || method == sip.ACK || method == sip.BYE || method == sip.CANCEL {
		return nil, fmt.Errorf("%w: use Reinvite or Hangup for %s", ErrBadOption, method)
	}
	req := sip.NewRequest(method, c.remoteTarget())
	if contentType != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", contentType))
	}
	req.SetBody(body)
	if c.cs != nil {
		return c.cs.Do(ctx, req)
	}
	return c.ss.Do(ctx, req)
}

// Reinvite sends a re-INVITE with a fresh SDP offer (sendrecv) in an established call placed
// by this UA, applies the answer and ACKs the 2xx.
func (c *Call) Reinvite(ctx context.Context) (*sip.Response, error) {
	return c.Reoffer(ctx, sip.INVITE, "sendrecv", false)
}

func (c *Call) remoteTarget() sip.Uri {
	var res *sip.Response
	var req *sip.Request
	if c.cs != nil {
		res, req = c.cs.InviteResponse, c.cs.InviteRequest
		if ct := res.Contact(); ct != nil {
			return *ct.Address.Clone()
		}
		return *req.Recipient.Clone()
	}
	req = c.ss.InviteRequest
	if ct := req.Contact(); ct != nil {
		return *ct.Address.Clone()
	}
	return *req.From().Address.Clone()
}

// ErrCallFailed carries the final non-2xx response to an INVITE.
type ErrCallFailed struct{ Response *sip.Response }

func (e *ErrCallFailed) Error() string {
	return fmt.Sprintf("sipua: call failed: %d %s", e.Response.StatusCode, e.Response.Reason)
}

// Call invites target (an AOR such as "sip:bob@pastry") through the node and waits for the
// answer; it sends the ACK and returns the established call. Cancelling ctx before the
// answer sends CANCEL. A non-2xx final response is returned as *ErrCallFailed.
func (u *UA) Call(ctx context.Context, target string) (*Call, error) {
	var tu sip.Uri
	if err := sip.ParseUri(target, &tu); err != nil {
		return nil, fmt.Errorf("%w: target %q: %w", ErrBadOption, target, err)
	}
	req := sip.NewRequest(sip.INVITE, tu)
	req.AppendHeader(&sip.ToHeader{Address: *tu.Clone()})
	from := &sip.FromHeader{Address: u.aor.URI(), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	cm, err := u.newCallMedia(u.kinds()...)
	if err != nil {
		return nil, err
	}
	if !u.cfg.lateOffer {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(cm.offer("sendrecv"))
	}
	u.outbound(req)
	sess, err := u.dcc.WriteInvite(ctx, req)
	if err != nil {
		cm.stop()
		return nil, err
	}
	c := &Call{ua: u, Outgoing: true, Remote: target, CallID: req.CallID().Value(), cs: sess, media: cm}
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{
		Username: u.cfg.user, Password: u.cfg.password,
		OnResponse: func(res *sip.Response) error {
			c.Responses = append(c.Responses, res)
			if res.StatusCode > 100 && res.StatusCode < 200 && !u.cfg.lateOffer && hasSDP(res) && cm.applyAnswer(res.Body()) == nil {
				u.track(c) // early media
			}
			return nil
		},
	})
	if err != nil {
		_ = sess.Close()
		c.end()
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return c, &ErrCallFailed{Response: de.Res}
		}
		return c, err
	}
	res := sess.InviteResponse
	var ackBody []byte
	switch {
	case u.cfg.lateOffer && hasSDP(res):
		if ackBody, err = cm.answer(res.Body()); err != nil {
			ackBody = nil
		}
	case hasSDP(res):
		_ = cm.applyAnswer(res.Body())
	}
	if err := sess.WriteAck(ctx, ackFor(sess.InviteRequest, res, ackBody)); err != nil {
		c.end()
		return c, err
	}
	u.track(c)
	return c, nil
}

// Message sends a MESSAGE with a text/plain body to target and returns the final response.
// A digest challenge (401 or 407) is answered with the UA's credentials, as for REGISTER
// and INVITE.
func (u *UA) Message(ctx context.Context, target, text string) (*sip.Response, error) {
	var tu sip.Uri
	if err := sip.ParseUri(target, &tu); err != nil {
		return nil, fmt.Errorf("%w: target %q: %w", ErrBadOption, target, err)
	}
	req := sip.NewRequest(sip.MESSAGE, tu)
	req.AppendHeader(&sip.ToHeader{Address: *tu.Clone()})
	from := &sip.FromHeader{Address: u.aor.URI(), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	req.SetBody([]byte(text))
	u.outbound(req)
	res, err := u.cli.Do(ctx, req)
	if err == nil && (res.StatusCode == 401 || res.StatusCode == 407) && u.cfg.password != "" {
		// DoDigestAuth adds the credentials, a new CSeq and a new Via.
		res, err = u.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: u.cfg.user, Password: u.cfg.password})
	}
	return res, err
}

func (u *UA) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && hasTag(to) { // re-INVITE
		if _, err := u.dsc.MatchDialogRequest(req); err != nil {
			if _, err := u.dcc.MatchRequestDialog(req); err != nil {
				_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
				return
			}
		}
		u.answerInDialog(req, tx)
		return
	}
	sess, err := u.dsc.ReadInvite(req, tx)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	defer func() {
		if sess.LoadState() < sip.DialogStateEstablished {
			_ = sess.Close()
		}
	}()
	if u.cfg.mode == AnswerBusy {
		_ = sess.Respond(486, "Busy Here", nil)
		return
	}
	cm, body, code := u.answerMedia(req)
	if code != 0 {
		_ = sess.Respond(code, "Not Acceptable Here", nil)
		return
	}
	c := &Call{ua: u, Remote: req.From().Address.String(), CallID: req.CallID().Value(), ss: sess, Invite: req, media: cm}
	defer func() {
		if sess.LoadState() < sip.DialogStateEstablished {
			c.end()
		}
	}()
	if u.cfg.earlyMedia && hasSDP(req) {
		if err := sess.Respond(183, "Session Progress", body, sip.NewHeader("Content-Type", "application/sdp")); err != nil {
			return
		}
		u.track(c)
	} else if err := sess.Respond(180, "Ringing", nil); err != nil {
		return
	}
	var ring <-chan time.Time
	if u.cfg.mode == AnswerRingOnly {
		ring = nil
	} else {
		t := time.NewTimer(u.cfg.ring)
		defer t.Stop()
		ring = t.C
	}
	select {
	case <-ring:
	case <-tx.Done():
		return // cancelled
	case <-u.ctx.Done():
		return
	}
	u.addCall(c) // before the 2xx: a late offer's answer comes in the ACK
	if err := sess.RespondSDP(body); err != nil {
		return
	}
	u.track(c)
	select {
	case u.incoming <- c:
	default:
		u.log.Warn("incoming call queue full")
	}
}

func (u *UA) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if err := u.dsc.ReadBye(req, tx); err == nil {
		return
	}
	if err := u.dcc.ReadBye(req, tx); err == nil {
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
}

func (u *UA) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	if u.cfg.refuseMessages {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 415, "Unsupported Media Type", nil))
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	m := Message{From: req.From().Address.String(), Body: append([]byte(nil), req.Body()...), At: time.Now()}
	select {
	case u.messages <- m:
	default:
		u.log.Warn("message queue full")
	}
}

// recordingConn records the first line of every datagram sent and received.
type recordingConn struct {
	net.PacketConn
	mu  sync.Mutex
	log []LadderEntry
}

func (c *recordingConn) record(sent bool, b []byte, addr net.Addr) {
	e := LadderEntry{At: time.Now(), Sent: sent}
	if addr != nil {
		e.Peer = addr.String()
	}
	s := string(b)
	first, rest, _ := strings.Cut(s, "\r\n")
	if strings.TrimSpace(first) == "" {
		return // keep-alive
	}
	e.First = first
	for _, line := range strings.Split(rest, "\r\n") {
		if line == "" {
			break
		}
		n, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch n = strings.ToLower(strings.TrimSpace(n)); n {
		case "call-id", "i":
			e.CallID = strings.TrimSpace(v)
		case "cseq":
			e.CSeq = strings.TrimSpace(v)
		}
	}
	c.mu.Lock()
	c.log = append(c.log, e)
	c.mu.Unlock()
}

func (c *recordingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if n > 0 {
		c.record(false, b[:n], a)
	}
	return n, a, err
}

func (c *recordingConn) WriteTo(b []byte, a net.Addr) (int, error) {
	c.record(true, b, a)
	return c.PacketConn.WriteTo(b, a)
}

func (c *recordingConn) entries() []LadderEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]LadderEntry(nil), c.log...)
}

// waitUDPListener waits until sipgo's transport layer has taken up the listener, so that
// requests are sent from it.
func waitUDPListener(tl *sip.TransportLayer, addr string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, _ := tl.GetConnection("udp", addr); c != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sipua: udp listener %s not ready", addr)
		}
		time.Sleep(time.Millisecond)
	}
}
