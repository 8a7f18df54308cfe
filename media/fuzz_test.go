package media

import (
	"bytes"
	"testing"
)

// FuzzReadFrames feeds arbitrary bytes to the frame reader of a relay with one session:
// nothing panics, and only well-formed frames for the session from its remote reach it.
func FuzzReadFrames(f *testing.F) {
	id := SessionIDOf("call", 0)
	good := make([]byte, frameHeader, frameHeader+12)
	putHeader(good, id, 0, 12)
	good = append(good, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1)
	f.Add(good)
	f.Add([]byte{0, 3, 1, 2, 3})
	f.Add(append(good, 0xff, 0xff))
	r := newRelay(f, newHost(f))
	s, err := r.Open(Key{"call", 0}, "remote-peer")
	if err != nil {
		f.Fatal(err)
	}
	s.SetPhone(netipLoopback(), netipLoopback(), loopback)
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = r.readFrames(bytes.NewReader(data), "remote-peer")
		_ = r.readFrames(bytes.NewReader(data), "another-peer")
	})
}
