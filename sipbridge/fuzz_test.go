package sipbridge

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/emiago/sipgo/sip"
)

// FuzzStreamFraming feeds arbitrary bytes to the stream framer and the message handling
// that follows it (parse, validate, build a response): nothing may panic, no frame may exceed
// the limit, and every frame must be exactly headers + Content-Length bytes.
func FuzzStreamFraming(f *testing.F) {
	f.Add([]byte("OPTIONS sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/P2P x;branch=z9hG4bK1\r\nTo: <sip:bob@pastry>\r\nFrom: <sip:a@pastry>;tag=1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("\r\n\r\nSIP/2.0 200 OK\r\nVia: SIP/2.0/P2P x;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\nl: 3\r\n\r\nabcINVITE sip:x SIP/2.0\r\n"))
	f.Add([]byte("MESSAGE sip:b@p SIP/2.0\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\nhello!"))
	f.Add([]byte("INVITE sip:b@p SIP/2.0\r\nContent-Length: -1\r\n\r\n"))
	f.Add([]byte("INVITE sip:b@p SIP/2.0\r\nNo-Length: 1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 4096
		fr := newFrameReader(bytes.NewReader(data), max)
		for i := 0; i < 64; i++ {
			frame, err := fr.next()
			if err != nil {
				var fe *frameError
				if errors.As(err, &fe) && len(fe.head) > max {
					t.Fatalf("header block %d bytes over the limit", len(fe.head))
				}
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrFraming) {
					return
				}
				t.Fatalf("unexpected error %v", err)
			}
			if len(frame) > max {
				t.Fatalf("frame %d bytes over the limit", len(frame))
			}
			handleFuzzMessage(frame)
		}
	})
}

func handleFuzzMessage(frame []byte) {
	m, err := parseFrame(frame)
	if err != nil {
		return
	}
	if req, ok := m.(*sip.Request); ok {
		if code, reason := validateRequest(req); code != 0 {
			_ = sip.NewResponseFromRequest(req, code, reason, nil).String()
			return
		}
		_ = encode(req.Clone())
	}
}

// FuzzPeerMessage hands arbitrary framed messages to a live node as if they came from another
// node over /hiersip/sip/1.0.0: the node must not panic, whatever the message says.
func FuzzPeerMessage(f *testing.F) {
	f.Add([]byte("INVITE sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/P2P x;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nTo: <sip:bob@pastry>\r\nFrom: <sip:a@pastry>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("BYE sip:bob@127.0.0.1:9 SIP/2.0\r\nVia: SIP/2.0/P2P x;branch=z9hG4bK2\r\nRoute: <sip:127.0.0.1:1;lr;hsn=bogus>\r\nTo: <sip:bob@pastry>;tag=2\r\nFrom: <sip:a@pastry>;tag=1\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("CANCEL sip:bob@pastry SIP/2.0\r\nVia: SIP/2.0/P2P x;branch=z9hG4bK1\r\nTo: <sip:bob@pastry>\r\nFrom: <sip:a@pastry>;tag=1\r\nCall-ID: c\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/P2P x;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKy\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("ACK sip:bob@elsewhere SIP/2.0\r\nVia: SIP/2.0/P2P x;branch=z9hG4bK3\r\nTo: <sip:bob@pastry>\r\nFrom: <sip:a@pastry>;tag=1\r\nCall-ID: c\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"))
	n := newTestNode(f, newMemDir(), "pastry", WithDialTimeout(50*time.Millisecond), WithLocatorTimeout(50*time.Millisecond))
	other, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		f.Fatal(err)
	}
	defer other.Close()
	from := other.ID()
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data), DefaultMaxMessageSize)
		for i := 0; i < 8; i++ {
			frame, err := fr.next()
			if err != nil {
				return
			}
			m, err := parseFrame(frame)
			if err != nil {
				return
			}
			n.b.receivePeer(from, m) // the admission chain, as the stream reader does
		}
	})
}
