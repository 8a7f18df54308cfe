package fork

import (
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkPlan: deciding the fork of a call to a user with 1, 3 and 10
// devices, a third of them at this node and the rest at other nodes of the
// device set (two devices per node).
func BenchmarkPlan(b *testing.B) {
	self := newPeer(b)
	for _, n := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			in := Input{AOR: alice, Self: self, Now: t0.Add(time.Minute), Devices: set()}
			for i := range n {
				inst := fmt.Sprintf("<urn:uuid:%d>", i)
				if i%3 == 0 {
					in.Local = append(in.Local, contact(fmt.Sprintf("sip:d%d@10.0.0.%d", i, i), inst, 0))
					continue
				}
				if len(in.Devices.Entries) == 0 || len(in.Devices.Entries[len(in.Devices.Entries)-1].Devices) == 2 {
					in.Devices.Entries = append(in.Devices.Entries, ent(newPeer(b)))
				}
				e := &in.Devices.Entries[len(in.Devices.Entries)-1]
				e.Devices = append(e.Devices, dev(inst, 0))
			}
			b.ReportAllocs()
			for b.Loop() {
				if p := NewPlan(in); len(p.Targets) == 0 {
					b.Fatal("no targets")
				}
			}
		})
	}
}

// BenchmarkSelector: the response context of a call forked to 1, 3 and 10
// branches: each rings (180), one answers (200), the others are cancelled
// and answer 487.
func BenchmarkSelector(b *testing.B) {
	ringing, ok, terminated := sip.NewResponse(180, "Ringing"), sip.NewResponse(200, "OK"), sip.NewResponse(487, "Request Terminated")
	for _, n := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("branches=%d", n), func(b *testing.B) {
			starts := make([]State, n)
			for i := range starts {
				starts[i] = Calling
			}
			b.ReportAllocs()
			for b.Loop() {
				s, _, _ := NewSelector(sip.INVITE, starts...)
				for i := range n {
					s.Response(i, ringing)
				}
				s.Response(n/2, ok)
				for i := range n {
					if i != n/2 {
						s.Response(i, terminated)
					}
				}
				if !s.Done() {
					b.Fatal("not done")
				}
			}
		})
	}
}
