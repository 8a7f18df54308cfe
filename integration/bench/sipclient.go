package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// sipClient is a minimal SIP UAC over one UDP socket: it sends requests as
// text, matches responses to them by Via branch and timestamps them with
// the monotonic clock (microsecond resolution, which sipp's -trace_rtt,
// rounded to whole milliseconds, does not give).
type sipClient struct {
	conn    *net.UDPConn
	local   string
	mu      sync.Mutex
	waiting map[string]chan *sip.Response // by branch
	retrans atomic.Int64
	done    chan struct{}
}

func newSIPClient() (*sipClient, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(4 << 20)
	c := &sipClient{conn: conn, local: conn.LocalAddr().String(), waiting: map[string]chan *sip.Response{}, done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

func (c *sipClient) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}

func (c *sipClient) readLoop() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		n, _, err := c.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		res, ok := msg.(*sip.Response)
		if !ok {
			continue // requests to the UAC are not expected
		}
		via := res.Via()
		if via == nil {
			continue
		}
		branch, _ := via.Params.Get("branch")
		c.mu.Lock()
		ch := c.waiting[branch]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- res:
			default:
			}
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// request is one outgoing request.
type request struct {
	method, ruri, callID, from, to string
	cseq                           int
	headers                        []string
	body                           string
}

var errTimeout = errors.New("bench: no final response")

// transact sends req to dst and returns its final response (and the time
// the first response of class ≥ 200 arrived), retransmitting every 500 ms
// until timeout. ACK is sent once and returns nil.
func (c *sipClient) transact(ctx context.Context, dst *net.UDPAddr, r request, timeout time.Duration) (*sip.Response, error) {
	branch := "z9hG4bK" + randHex(8)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\n", r.method, r.ruri, c.local, branch)
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n", r.from, r.to, r.callID, r.cseq, r.method)
	for _, h := range r.headers {
		b.WriteString(h + "\r\n")
	}
	if r.body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(r.body), r.body)
	msg := []byte(b.String())
	if r.method == "ACK" {
		_, err := c.conn.WriteToUDP(msg, dst)
		return nil, err
	}
	ch := make(chan *sip.Response, 8)
	c.mu.Lock()
	c.waiting[branch] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, branch)
		c.mu.Unlock()
	}()
	if _, err := c.conn.WriteToUDP(msg, dst); err != nil {
		return nil, err
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	retrans := time.NewTicker(500 * time.Millisecond)
	defer retrans.Stop()
	provisional := false
	for {
		select {
		case res := <-ch:
			if res.StatusCode >= 200 {
				return res, nil
			}
			provisional = true
		case <-retrans.C:
			if !provisional || r.method != "INVITE" {
				c.retrans.Add(1)
				_, _ = c.conn.WriteToUDP(msg, dst)
			}
		case <-deadline.C:
			return nil, errTimeout
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

const benchSDP = "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// call places one call to ruri through dst: INVITE, ACK, BYE. It returns
// the time from sending the INVITE to receiving its 200 OK.
func (c *sipClient) call(ctx context.Context, dst *net.UDPAddr, ruri string, timeout time.Duration) (time.Duration, error) {
	callID := randHex(12) + "@bench"
	from := fmt.Sprintf("<sip:bench@%s>;tag=%s", c.local, randHex(6))
	to := "<" + ruri + ">"
	start := time.Now()
	res, err := c.transact(ctx, dst, request{method: "INVITE", ruri: ruri, callID: callID, from: from, to: to, cseq: 1,
		headers: []string{"Contact: <sip:bench@" + c.local + ">"}, body: benchSDP}, timeout)
	setup := time.Since(start)
	if err != nil {
		return 0, err
	}
	if os.Getenv("BENCH_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "200 OK:\n%s\n", res.String())
	}
	if res.StatusCode != 200 {
		return 0, fmt.Errorf("bench: INVITE answered %d %s", res.StatusCode, res.Reason)
	}
	// ACK and BYE go as RFC 3261 dialogs do: to the remote target (the 200 OK's
	// Contact) along the route set (its Record-Route, reversed), sent to dst, the
	// route's first hop.
	toVal := strings.TrimSpace(strings.TrimPrefix(res.To().String(), "To:"))
	target := ruri
	if ct := res.Contact(); ct != nil {
		target = ct.Address.String()
	}
	var routes []string
	rrs := res.GetHeaders("Record-Route")
	for i := len(rrs) - 1; i >= 0; i-- {
		routes = append(routes, "Route: "+rrs[i].Value())
	}
	if _, err := c.transact(ctx, dst, request{method: "ACK", ruri: target, callID: callID, from: from, to: toVal, cseq: 1, headers: routes}, timeout); err != nil {
		return setup, err
	}
	bye, err := c.transact(ctx, dst, request{method: "BYE", ruri: target, callID: callID, from: from, to: toVal, cseq: 2, headers: routes}, timeout)
	if err != nil {
		return setup, fmt.Errorf("bench: BYE: %w", err)
	}
	if bye.StatusCode != 200 {
		return setup, fmt.Errorf("bench: BYE answered %d %s", bye.StatusCode, bye.Reason)
	}
	return setup, nil
}

// register sends REGISTER for aor with contact to dst (registrar request
// URI regURI) and returns the response. cseq and callID let a refresh reuse
// the registration's Call-ID.
func (c *sipClient) register(ctx context.Context, dst *net.UDPAddr, regURI, aor, contact, callID string, cseq int, expires int, timeout time.Duration) (*sip.Response, error) {
	return c.transact(ctx, dst, request{method: "REGISTER", ruri: regURI, callID: callID,
		from: "<" + aor + ">;tag=" + callID[:8], to: "<" + aor + ">", cseq: cseq,
		headers: []string{"Contact: <" + contact + ">", fmt.Sprintf("Expires: %d", expires)}}, timeout)
}

func mustUDP(addr string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		panic(err)
	}
	return a
}
