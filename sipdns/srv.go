package sipdns

import (
	"slices"

	"github.com/miekg/dns"
)

// orderSRV returns the usable records of rrs in the order RFC 2782 says a
// client tries them: ascending priority; within one priority, a weighted
// random order (each pick chooses a record with probability weight/sum, with
// zero-weight records first in the list so that they keep a small chance).
// A single record with target "." means the service is decidedly not
// available: orderSRV then returns none. randN(n) returns an integer in
// [0, n).
func orderSRV(rrs []*dns.SRV, randN func(int) int) []*dns.SRV {
	if len(rrs) == 1 && rrs[0].Target == "." {
		return nil
	}
	recs := make([]*dns.SRV, 0, len(rrs))
	for _, r := range rrs {
		if r.Target != "." {
			recs = append(recs, r)
		}
	}
	slices.SortStableFunc(recs, func(a, b *dns.SRV) int { return int(a.Priority) - int(b.Priority) })
	out := make([]*dns.SRV, 0, len(recs))
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].Priority == recs[i].Priority {
			j++
		}
		group := slices.Clone(recs[i:j])
		// Zero weights first (RFC 2782, "Usage rules").
		slices.SortStableFunc(group, func(a, b *dns.SRV) int {
			return min(int(a.Weight), 1) - min(int(b.Weight), 1)
		})
		for len(group) > 0 {
			sum := 0
			for _, r := range group {
				sum += int(r.Weight)
			}
			pick := randN(sum + 1) // 0..sum
			k, run := 0, 0
			for k = range group {
				run += int(group[k].Weight)
				if run >= pick {
					break
				}
			}
			out = append(out, group[k])
			group = slices.Delete(group, k, k+1)
		}
		i = j
	}
	return out
}
