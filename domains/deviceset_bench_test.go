package domains

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkDeviceSetValidate: the CPU cost of validating an AOR's device
// set, as every storer and every lookup does, with 1, 3 and 8 serving
// nodes of 2 devices each (one signature per entry, the owner's and the
// envelope's).
func BenchmarkDeviceSetValidate(b *testing.B) {
	uk, _ := GenerateUserKey()
	v := DeviceSetValidator{Domain: "pastry", Now: func() time.Time { return t0 }}
	key := DeviceSetKey(alice)
	for _, n := range []int{1, 3, MaxServingNodes} {
		var es []DeviceEntry
		var w signer
		for i := range n {
			s := newSigner(b)
			if i == 0 {
				w = s
			}
			es = append(es, entry(b, s, uint64(i+1), 2))
		}
		val := sealSet(b, devSet(b, w, 10, uk, es...), w.key)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			for b.Loop() {
				if err := v.Validate(key, val); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(val)), "bytes")
		})
	}
}
