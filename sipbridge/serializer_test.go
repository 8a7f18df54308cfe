package sipbridge

import (
	"sync"
	"testing"
	"time"
)

func TestSerializerOrder(t *testing.T) {
	var wg sync.WaitGroup
	s := newSerializer(func(f func()) bool { wg.Add(1); go func() { defer wg.Done(); f() }(); return true })
	s.timeout = 50 * time.Millisecond
	var mu sync.Mutex
	var got []string
	rec := func(v string) func() { return func() { mu.Lock(); got = append(got, v); mu.Unlock() } }

	// places reserved in arrival order, filled in the opposite order
	s.reserve("c", "ACK 1 a")
	s.reserve("c", "BYE 2 b")
	s.reserve("c", "ACK 1 a") // a retransmission: no second place
	s.run("c", "BYE 2 b", rec("BYE"))
	s.run("c", "ACK 1 a", rec("ACK"))
	// an absorbed message leaves its place empty: it is skipped after the timeout
	s.reserve("c", "INFO 3 c")
	s.run("c", "", rec("peer"))
	// a seen id reserves nothing
	s.reserve("c", "BYE 2 b")
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[0] != "ACK" || got[1] != "BYE" || got[2] != "peer" {
		t.Fatalf("order %v, want [ACK BYE peer]", got)
	}
	if !s.known("c", "ACK 1 a") || s.known("c", "INVITE 9 z") {
		t.Fatal("known")
	}
}
