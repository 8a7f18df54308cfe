package sipbridge

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// frameReader splits a byte stream into SIP messages as RFC 3261 §18.3 does for stream
// transports: the header block ends at the first empty line and Content-Length (mandatory)
// gives the body size. Empty lines between messages (keep-alives) are skipped. The message
// next returns lives in the reader's own buffer until the next call: the transports parse it
// at once (the parser copies what it keeps).
type frameReader struct {
	r   *bufio.Reader
	max int
	// started, when set, is called when the first byte of a message (after keep-alives) is
	// there: the reader's owner moves from the idle deadline to the message deadline.
	started func()
	buf     []byte // the message being read
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 4096), max: max}
}

// frameError is a framing failure; head holds the header block when it was read whole,
// so that the caller can still try to answer 400.
type frameError struct {
	err  error
	head []byte
}

func (e *frameError) Error() string { return e.err.Error() }
func (e *frameError) Unwrap() error { return e.err }

// next returns the next whole message. Errors other than io.EOF leave the stream unusable.
func (f *frameReader) next() ([]byte, error) {
	buf := f.buf[:0]
	// skip keep-alive CRLFs
	for {
		c, err := f.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c != '\r' && c != '\n' {
			_ = f.r.UnreadByte()
			break
		}
	}
	if f.started != nil {
		f.started()
	}
	clen := -1
	for {
		line, err := f.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("%w: header line longer than %d bytes", ErrTooLarge, f.r.Size())
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if len(buf) > 0 { // part of a header block: a 400 may still be built from it
				return nil, &frameError{fmt.Errorf("%w: header block incomplete: %w", ErrFraming, err), bytes.Clone(buf)}
			}
			return nil, err
		}
		if len(buf)+len(line) > f.max {
			return nil, fmt.Errorf("%w: header block over %d bytes", ErrTooLarge, f.max)
		}
		buf = append(buf, line...)
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			break
		}
		if t[0] == ' ' || t[0] == '\t' {
			continue // folded continuation
		}
		name, val, ok := bytes.Cut(t, []byte(":"))
		if !ok {
			continue // the parser decides
		}
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, []byte("content-length")) || bytes.EqualFold(name, []byte("l")) {
			n, ok := atoiBytes(bytes.TrimSpace(val))
			if !ok || (clen >= 0 && clen != n) {
				clen = -2
				continue
			}
			if clen != -2 {
				clen = n
			}
		}
	}
	f.buf = buf
	head := len(buf)
	switch {
	case clen == -1:
		return nil, &frameError{fmt.Errorf("%w: no Content-Length", ErrFraming), bytes.Clone(buf)}
	case clen == -2:
		return nil, &frameError{fmt.Errorf("%w: invalid Content-Length", ErrFraming), bytes.Clone(buf)}
	case head+clen > f.max:
		return nil, &frameError{fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, head+clen, f.max), bytes.Clone(buf)}
	}
	buf = slices.Grow(buf, clen)[:head+clen]
	f.buf = buf
	if _, err := io.ReadFull(f.r, buf[head:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		// the header block is whole: a 400 can still be built
		return nil, &frameError{fmt.Errorf("%w: body incomplete (Content-Length %d): %w", ErrFraming, clen, err), bytes.Clone(buf[:head])}
	}
	if cap(f.buf) > 64<<10 {
		f.buf = nil // a rare large message: do not keep its buffer
	}
	return buf, nil
}

// atoiBytes parses a non-negative decimal number of at most 9 digits.
func atoiBytes(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseFrame parses one framed message with sipgo's parser.
func parseFrame(data []byte) (sip.Message, error) {
	return sip.ParseMessage(data)
}

// withoutLength returns a header block with its Content-Length lines removed and
// "Content-Length: 0" added, so that a response can still be built to a message whose
// body could not be framed.
func withoutLength(head []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(head, []byte("\n")) {
		t := strings.TrimRight(string(line), "\r\n")
		if t == "" {
			break
		}
		if name, _, ok := strings.Cut(t, ":"); ok {
			n := strings.TrimSpace(name)
			if strings.EqualFold(n, "content-length") || strings.EqualFold(n, "l") {
				continue
			}
		}
		out.WriteString(t)
		out.WriteString("\r\n")
	}
	out.WriteString("Content-Length: 0\r\n\r\n")
	return out.Bytes()
}
