package sipbridge

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/sipua"
)

// rawPeer is a bare libp2p host speaking ProtocolID by hand.
type rawPeer struct {
	t    *testing.T
	h    interface{ Close() error }
	got  chan sip.Message
	open func(ctx context.Context) network.Stream
}

func newRawPeer(t *testing.T, n *testNode) *rawPeer {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	rp := &rawPeer{t: t, h: h, got: make(chan sip.Message, 64)}
	h.SetStreamHandler(ProtocolID, func(s network.Stream) {
		fr := newFrameReader(s, 1<<20)
		for {
			data, err := fr.next()
			if err != nil {
				return
			}
			if m, err := parseFrame(data); err == nil {
				rp.got <- m
			}
		}
	})
	ctx := ctxT(t, 5*time.Second)
	if err := h.Connect(ctx, peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	rp.open = func(ctx context.Context) network.Stream {
		s, err := h.NewStream(ctx, n.h.ID(), ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return rp
}

func (rp *rawPeer) expect(what string, pred func(sip.Message) bool) sip.Message {
	rp.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-rp.got:
			if pred(m) {
				return m
			}
		case <-timeout:
			rp.t.Fatalf("no %s", what)
			return nil
		}
	}
}

func status(code int) func(sip.Message) bool {
	return func(m sip.Message) bool { r, ok := m.(*sip.Response); return ok && r.StatusCode == code }
}

const rawOptions = "OPTIONS sip:nobody@pastry SIP/2.0\r\nVia: SIP/2.0/P2P x;branch=z9hG4bK%s\r\nMax-Forwards: %s\r\nTo: <sip:nobody@pastry>\r\nFrom: <sip:a@pastry>;tag=1\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n%s\r\n"

func rawReq(branch, mf, callID, extra string) string {
	return sprintf(rawOptions, branch, mf, callID, extra)
}

// TestStreamMalformed: over /hiersip/sip/1.0.0, a request without Content-Length gets 400 and
// the stream is reset; garbage resets the stream; Max-Forwards 0 gets 483; an unknown AOR 404;
// an oversized message resets the stream; the node keeps serving.
func TestStreamMalformed(t *testing.T) {
	n := newTestNode(t, newMemDir(), "pastry", WithMaxMessageSize(2048))
	rp := newRawPeer(t, n)
	ctx := ctxT(t, 10*time.Second)

	s := rp.open(ctx)
	_, _ = s.Write([]byte(rawReq("a1", "70", "c1", "Content-Length: 0\r\n")))
	rp.expect("404 for an unknown AOR", status(404))
	_, _ = s.Write([]byte(rawReq("a2", "0", "c2", "Content-Length: 0\r\n")))
	rp.expect("483 at Max-Forwards 0", status(483))
	_, _ = s.Write([]byte(rawReq("a3", "70", "c3", "")))
	rp.expect("400 without Content-Length", status(400))
	expectReset(t, s)

	s = rp.open(ctx)
	_, _ = s.Write([]byte("\x00\x01garbage\r\n\r\n"))
	expectReset(t, s)

	s = rp.open(ctx)
	_, _ = s.Write([]byte(rawReq("a4", "70", "c4", "Content-Length: 5000\r\n")))
	rp.expect("400 for an oversized message", status(400))
	expectReset(t, s)

	s = rp.open(ctx)
	_, _ = s.Write([]byte(rawReq("a5", "70", "c5", "Content-Length: 0\r\n")))
	rp.expect("the node still answering", status(404))
}

func expectReset(t *testing.T, s network.Stream) {
	t.Helper()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(s)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "deadline") {
		t.Fatalf("stream not reset: %v", err)
	}
}

// TestPeerTransactionLimit: a peer over its transaction limit gets 503.
func TestPeerTransactionLimit(t *testing.T) {
	dir := newMemDir()
	n := newTestNode(t, dir, "pastry", WithMaxTransactionsPerPeer(1))
	bob := newTestUA(t, "sip:bob@pastry", n, sipua.WithUAAnswer(sipua.AnswerRingOnly, 0))
	ctx := ctxT(t, 10*time.Second)
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	rp := newRawPeer(t, n)
	s := rp.open(ctx)
	inv := "INVITE sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/P2P x;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\nTo: <sip:bob@pastry>\r\nFrom: <sip:a@pastry>;tag=1\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n"
	_, _ = s.Write([]byte(sprintf(inv, "i1", "call-1")))
	rp.expect("180 from the ringing callee", status(180))
	_, _ = s.Write([]byte(sprintf(inv, "i2", "call-2")))
	rp.expect("503 over the limit", status(503))
	// CANCEL the first: 200 for the CANCEL, 487 for the INVITE
	_, _ = s.Write([]byte("CANCEL sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/P2P x;branch=z9hG4bKi1\r\nMax-Forwards: 70\r\nTo: <sip:bob@pastry>\r\nFrom: <sip:a@pastry>;tag=1\r\nCall-ID: call-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"))
	rp.expect("200 for CANCEL", status(200))
	rp.expect("487 for the INVITE", status(487))
}
