package sipbridge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func tortureDir(t *testing.T) string {
	t.Helper()
	// the sipgo module in the module cache holds RFC 4475's messages
	out, err := goListDir("github.com/emiago/sipgo")
	if err != nil {
		t.Skipf("sipgo module dir: %v", err)
	}
	return filepath.Join(out, "sip", "testdata", "torture")
}

// tortureMsg is one RFC 4475 message and the answer it must get.
type tortureMsg struct {
	name  string // "invalid/clerr.dat"
	data  []byte
	valid bool
	// want: 0 no answer (a response, or a request without Via); -1 a final answer that is not
	// 400, 416 or 505 (a valid request); else that status, or any 4xx/5xx when want is 1.
	want int
}

// tortureWant is the answer RFC 4475 asks for, where it names one (otherwise any 4xx/5xx).
var tortureWant = map[string]int{
	"invalid/badvers.dat": 505, "invalid/unkscm.dat": 416, "invalid/novelsc.dat": 416,
	"invalid/zeromf.dat": 483, "invalid/insuf.dat": 400, "invalid/mismatch01.dat": 400,
	"invalid/mismatch02.dat": 400, "invalid/multi01.dat": 400, "invalid/mcl01.dat": 400,
	"invalid/ncl.dat": 400, "invalid/clerr.dat": 400, "invalid/scalar02.dat": 400,
	"invalid/quotbal.dat": 400, "invalid/ltgtruri.dat": 400, "invalid/lwsruri.dat": 400,
	"invalid/lwsstart.dat": 400, "invalid/trws.dat": 400, "invalid/badaspec.dat": 400,
	"invalid/baddn.dat": 400, "invalid/badinv01.dat": 400, "invalid/baddate.dat": 400,
	"invalid/bext01.dat": 420,
}

func tortureMessages(t *testing.T) []tortureMsg {
	dir := tortureDir(t)
	var out []tortureMsg
	for _, sub := range []string{"invalid", "valid"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*.dat"))
		if len(files) == 0 {
			t.Fatalf("no torture messages in %s", filepath.Join(dir, sub))
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m := tortureMsg{name: sub + "/" + filepath.Base(f), data: data, valid: sub == "valid"}
			switch {
			case bytes.HasPrefix(data, []byte("SIP/")) || !hasViaLine(data):
				m.want = 0
			case m.valid:
				m.want = -1
			case tortureWant[m.name] != 0:
				m.want = tortureWant[m.name]
			default:
				m.want = 1
			}
			out = append(out, m)
		}
	}
	return out
}

// hasViaLine reports whether data's header block has a Via line (long or compact form).
func hasViaLine(data []byte) bool {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	for _, l := range strings.Split(string(head), "\r\n")[1:] {
		name, _, ok := strings.Cut(l, ":")
		if ok && canonicalName(strings.TrimSpace(name)) == "via" {
			return true
		}
	}
	return false
}

// framesWhole reports whether data is a sequence of whole messages on a stream.
func framesWhole(data []byte) bool {
	fr := newFrameReader(bytes.NewReader(data), 1<<20)
	for {
		if _, err := fr.next(); err != nil {
			return errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF)
		}
	}
}

// txLines is the raw Via and CSeq method of data, which identify its transaction.
func txLines(data []byte) string {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	var via, method string
	for _, l := range strings.Split(string(head), "\r\n")[1:] {
		name, v, ok := strings.Cut(l, ":")
		switch n := canonicalName(strings.TrimSpace(name)); {
		case !ok:
		case n == "via" && via == "":
			via = strings.TrimSpace(v)
		case n == "cseq":
			if f := strings.Fields(v); len(f) == 2 {
				method = f[1]
			}
		}
	}
	if via == "" {
		return ""
	}
	return via + "|" + method
}

// check compares the final answers got (status codes) with m.want.
func (m tortureMsg) check(t *testing.T, transport string, got []int) {
	t.Helper()
	final := 0
	for _, c := range got {
		if c >= 200 {
			final = c
		}
	}
	ok := false
	switch {
	case m.want == 0:
		ok = final == 0
	case m.want == -1:
		ok = final >= 200 && final != 400 && final != 416 && final != 505
	case m.want == 1:
		ok = final >= 400 && final < 600
	default:
		ok = final == m.want
	}
	if !ok {
		want := map[int]string{0: "no answer", -1: "a final answer for a valid request", 1: "a 4xx/5xx"}[m.want]
		if want == "" {
			want = sprintf("%d", m.want)
		}
		t.Errorf("%s over %s: answered %v, want %s", m.name, transport, got, want)
	}
}

// readAnswers collects the status codes of the responses read from next until a final one
// (from another message than a provisional) or the deadline.
func readAnswers(next func() ([]byte, error)) []int {
	var got []int
	for {
		data, err := next()
		if err != nil {
			return got
		}
		// by the status line only: an answer to a malformed request can echo malformed headers
		if code := statusOf(data); code != 0 {
			got = append(got, code)
			if code >= 200 {
				return got
			}
		}
	}
}

// TestTortureUDP sends each of RFC 4475's torture messages from a socket of its own to the
// UA-facing UDP listener: every invalid request that has a Via gets a 4xx or 5xx (the one
// the RFC names, where it names one), every valid request a final answer that is not 400,
// responses nothing; the node still completes a call afterwards.
func TestTortureUDP(t *testing.T) {
	n1, n2 := twoNodes(t)
	dst, _ := net.ResolveUDPAddr("udp", n1.b.UDPAddr())
	seen := map[string]bool{}
	for _, m := range tortureMessages(t) {
		// RFC 4475's messages reuse branches: a request with the Via and CSeq of an earlier
		// one is a retransmission of its transaction (RFC 3261 §17.2.3), answered to where the
		// first came from. Such a message goes to a node of its own.
		dst := dst
		if key := txLines(m.data); key != "" && seen[key] {
			dst, _ = net.ResolveUDPAddr("udp", newTestNode(t, newMemDir(), "pastry").b.UDPAddr())
		} else {
			seen[key] = true
		}
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteTo(m.data, dst); err != nil {
			t.Fatal(err)
		}
		wait := 1500 * time.Millisecond
		if m.want == 0 {
			wait = 300 * time.Millisecond
		}
		deadline := time.Now().Add(wait)
		got := readAnswers(func() ([]byte, error) {
			_ = conn.SetReadDeadline(deadline)
			buf := make([]byte, 65535)
			n, _, err := conn.ReadFrom(buf)
			return buf[:n], err
		})
		_ = conn.Close()
		t.Logf("%s -> %v", m.name, got)
		m.check(t, "UDP", got)
	}
	stillCalls(t, n1, n2)
}

// TestTortureTCP sends each torture message on a TCP connection of its own: the same
// answers as over UDP, the connection is never reset, and after a message that can be
// framed (Content-Length right) it stays open for the next one.
func TestTortureTCP(t *testing.T) {
	n1, n2 := twoNodes(t)
	for _, m := range tortureMessages(t) {
		c, err := net.Dial("tcp", n1.b.TCPAddr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(m.data); err != nil {
			t.Fatal(err)
		}
		fr := newFrameReader(c, 1<<20)
		var readErr error
		next := func(d time.Duration) func() ([]byte, error) {
			deadline := time.Now().Add(d)
			return func() ([]byte, error) {
				_ = c.SetReadDeadline(deadline)
				data, err := fr.next()
				if err != nil {
					readErr = err
				}
				return data, err
			}
		}
		wait := 1500 * time.Millisecond
		if m.want == 0 {
			wait = 300 * time.Millisecond
		}
		got := readAnswers(next(wait))
		framed := framesWhole(m.data) // else the node answers and closes: the stream cannot go on
		if len(got) == 0 || got[len(got)-1] < 200 {
			// A message whose Content-Length promises more than it has (clerr) waits for
			// the rest: end the sending side, as a client that gave up would.
			_ = c.(*net.TCPConn).CloseWrite()
			got = append(got, readAnswers(next(wait))...)
		} else if framed {
			// still open: an OPTIONS to the node itself is answered on it
			ping := "OPTIONS sip:" + n1.b.TCPAddr() + " SIP/2.0\r\nVia: SIP/2.0/TCP " + c.LocalAddr().String() +
				";branch=z9hG4bKafter\r\nMax-Forwards: 70\r\nFrom: <sip:t@pastry>;tag=1\r\nTo: <sip:t@pastry>\r\n" +
				"Call-ID: after-" + m.name + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
			if _, err := c.Write([]byte(ping)); err != nil {
				t.Errorf("%s over TCP: connection lost after the answer: %v", m.name, err)
			} else if a := readAnswers(next(3 * time.Second)); len(a) == 0 || a[len(a)-1] != 200 {
				t.Errorf("%s over TCP: connection unusable after the answer (%v, %v)", m.name, a, readErr)
			}
		}
		if errors.Is(readErr, syscall.ECONNRESET) {
			t.Errorf("%s over TCP: connection reset", m.name)
		}
		_ = c.Close()
		t.Logf("%s -> %v", m.name, got)
		m.check(t, "TCP", got)
	}
	stillCalls(t, n1, n2)
}
