package sipbridge

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// countingWriter counts the bytes written to it and keeps the first few KB.
type countingWriter struct {
	n    atomic.Int64
	mu   sync.Mutex
	head bytes.Buffer
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	w.mu.Lock()
	if w.head.Len() < 8<<10 {
		w.head.Write(p[:min(len(p), 8<<10-w.head.Len())])
	}
	w.mu.Unlock()
	return len(p), nil
}

// mark forgets the kept head: String then shows what was written after it.
func (w *countingWriter) mark() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.head.Reset()
	return w.n.Load()
}

func (w *countingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.head.String()
}

// garbage returns n bytes that are no SIP message (no CRLF, so no header block either).
func garbage(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		if b[i] == '\r' || b[i] == '\n' {
			b[i] = 'x'
		}
	}
	return b
}

// udpPing sends an OPTIONS from pc to the node and waits for its answer: every datagram
// sent before it from pc has been read by then (one reader, in order).
func udpPing(t *testing.T, pc net.PacketConn, dst net.Addr, i int) {
	t.Helper()
	req := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKping%d\r\nMax-Forwards: 70\r\n"+
		"From: <sip:ping@pastry>;tag=p%d\r\nTo: <sip:%s>\r\nCall-ID: ping-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		dst, pc.LocalAddr(), i, i, dst, i)
	buf := make([]byte, 65535)
	for try := 0; try < 20; try++ {
		if _, err := pc.WriteTo([]byte(req), dst); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			if m, err := sip.ParseMessage(buf[:n]); err == nil {
				if res, ok := m.(*sip.Response); ok && res.CallID() != nil && res.CallID().Value() == fmt.Sprintf("ping-%d", i) {
					return
				}
			}
		}
	}
	t.Fatal("node does not answer OPTIONS")
}

// TestLogFloodBounded floods a node with 30 KB datagrams of garbage (and garbage on SIP/TCP
// connections and libp2p streams) with its logger at debug level: the log grows by a bounded
// number of bytes, not by the payloads (sipgo logs each unparsable datagram at ERROR with the
// whole payload).
func TestLogFloodBounded(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		t.Run(level.String(), func(t *testing.T) {
			w := &countingWriter{}
			log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
			n := newTestNode(t, newMemDir(), "pastry", WithLogger(log))
			dst, _ := net.ResolveUDPAddr("udp", n.b.UDPAddr())
			pc, err := net.ListenPacket("udp", "127.0.0.2:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			udpPing(t, pc, dst, 0)
			before := w.mark()

			const datagrams, size = 400, 30 << 10
			junk := garbage(size)
			sent := 0
			for i := 0; i < datagrams; i++ {
				if _, err := pc.WriteTo(junk, dst); err == nil {
					sent++
				}
				if i%50 == 49 {
					udpPing(t, pc, dst, i) // pace the flood so that the socket buffer drops little
				}
			}
			udpPing(t, pc, dst, datagrams)

			// garbage over SIP/TCP and over libp2p streams
			for i := 0; i < 20; i++ {
				c, err := net.Dial("tcp", n.b.TCPAddr())
				if err != nil {
					t.Fatal(err)
				}
				_, _ = c.Write(junk)
				_ = c.Close()
			}
			rp := newRawPeer(t, n)
			ctx := ctxT(t, 10*time.Second)
			for i := 0; i < 20; i++ {
				s := rp.open(ctx)
				_, _ = s.Write([]byte("OPTIONS sip:x@pastry SIP/2.0\r\n" + strings.Repeat("X-Junk: "+string(junk[:200])+"\r\n", 100) + "\r\n"))
				_ = s.Close()
			}
			udpPing(t, pc, dst, datagrams+1)
			logged := w.n.Load() - before
			t.Logf("level %v: %d datagrams of %d bytes sent (%d MB), plus 20 TCP connections and 20 streams of garbage: %d log bytes", level, sent, size, sent*size>>20, logged)
			bound := int64(64 << 10)
			if level == slog.LevelInfo {
				bound = 4 << 10
			}
			if os.Getenv("SHOWLOG") != "" {
				t.Log(w.String())
			}
			if logged > bound {
				t.Fatalf("the flood wrote %d log bytes, bound %d; log starts:\n%.3000s", logged, bound, w.String())
			}
		})
	}
}
