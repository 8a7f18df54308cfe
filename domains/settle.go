package domains

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ErrConflict: a lookup saw claims that do not continue each other and no
// claim is held by more of the key's closest storers than the others.
var ErrConflict = errors.New("domains: conflicting records, no majority of storers")

// conflictLog remembers when validators last saw conflicting claims for a
// key, so that a lookup can tell whether one happened while it ran.
type conflictLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const maxConflictKeys = 4096

func (c *conflictLog) note(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || len(c.last) >= maxConflictKeys {
		c.last = make(map[string]time.Time) // bounded: forget rather than grow
	}
	c.last[key] = time.Now()
}

// since reports whether a conflict of key was noted at or after t.
func (c *conflictLog) since(key string, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.last[key]
	return ok && !at.Before(t)
}

// chooser is what settle needs of a validator: validity, and whether one
// value replaces another.
type chooser interface {
	Validate(key string, value []byte) error
	supersedesRaw(key string, a, b []byte) bool
}

func (v BindingValidator) supersedesRaw(key string, a, b []byte) bool {
	ra, err1 := v.open(key, a)
	rb, err2 := v.open(key, b)
	return err1 == nil && err2 == nil && v.supersedes(ra, rb, v.now())
}

func (v ProxyValidator) supersedesRaw(key string, a, b []byte) bool {
	ra, err1 := v.open(key, a)
	rb, err2 := v.open(key, b)
	return err1 == nil && err2 == nil && ProxySupersedes(ra, rb)
}

// settleTimeout bounds each storer's answer while settling a conflict.
const settleTimeout = 5 * time.Second

// settle decides a conflicting key by asking its closest storers: it looks
// up the K closest peers, asks each for its value, and returns the value
// with the most support, where a value's support is the number of storers
// holding it or a value it supersedes. This node's own copy counts as one
// storer. A tie keeps this node's copy if it is among the best, else it is
// ErrConflict.
func (o *Overlay) settle(ctx context.Context, key string) ([]byte, error) {
	o.nSettled.Add(1)
	ch, ok := o.chooser(key)
	if !ok {
		return nil, fmt.Errorf("%w: no validator for the key", ErrBadRecord)
	}
	peers, err := o.dht.GetClosestPeers(ctx, key)
	if err != nil && len(peers) == 0 {
		return nil, fmt.Errorf("settling a conflict: %w", err)
	}
	pm, err := dhtpb.NewProtocolMessenger(o.dht.MessageSender())
	if err != nil {
		return nil, err
	}
	var (
		mu    sync.Mutex
		votes = map[string]int{}
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 8)
	)
	for _, p := range peers {
		if p == o.h.ID() {
			continue
		}
		wg.Add(1)
		go func(p peer.ID) {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			qctx, cancel := context.WithTimeout(ctx, settleTimeout)
			defer cancel()
			rec, _, err := pm.GetValue(qctx, p, key)
			if err != nil || rec == nil || rec.GetValue() == nil {
				return
			}
			mu.Lock()
			votes[string(rec.GetValue())]++
			mu.Unlock()
		}(p)
	}
	wg.Wait()
	var local []byte
	if v, ok := o.localValue(ctx, key); ok {
		local = v
		votes[string(v)]++
	}
	return decide(ch, key, votes, local)
}

func (o *Overlay) chooser(key string) (chooser, bool) {
	ns, _, ok := splitKey(key)
	if !ok {
		return nil, false
	}
	c, ok := o.vals[ns].(chooser)
	return c, ok
}

// splitKey splits "/<ns>/<id>".
func splitKey(key string) (string, string, bool) {
	if len(key) < 3 || key[0] != '/' {
		return "", "", false
	}
	for i := 1; i < len(key); i++ {
		if key[i] == '/' {
			return key[1:i], key[i+1:], true
		}
	}
	return "", "", false
}

// decide picks among the values the storers hold (with how many hold each).
func decide(ch chooser, key string, votes map[string]int, local []byte) ([]byte, error) {
	var vals []string
	for v := range votes {
		if ch.Validate(key, []byte(v)) == nil {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return nil, ErrNotFound
	}
	n := len(vals)
	sup := make([][]bool, n)
	for i := range vals {
		sup[i] = make([]bool, n)
		for j := range vals {
			if i != j {
				sup[i][j] = ch.supersedesRaw(key, []byte(vals[i]), []byte(vals[j]))
			}
		}
	}
	support := func(i int) int {
		seen := make([]bool, n)
		stack := []int{i}
		seen[i] = true
		total := 0
		for len(stack) > 0 {
			k := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			total += votes[vals[k]]
			for j := range vals {
				if sup[k][j] && !seen[j] {
					seen[j] = true
					stack = append(stack, j)
				}
			}
		}
		return total
	}
	bestSup := -1
	var top []int
	for i := range vals {
		superseded := false
		for j := range vals {
			if sup[j][i] && !sup[i][j] {
				superseded = true
				break
			}
		}
		if superseded {
			continue
		}
		switch s := support(i); {
		case s > bestSup:
			bestSup, top = s, []int{i}
		case s == bestSup:
			top = append(top, i)
		}
	}
	if len(top) == 1 {
		return []byte(vals[top[0]]), nil
	}
	for _, i := range top {
		if local != nil && vals[i] == string(local) {
			return local, nil
		}
	}
	return nil, ErrConflict
}
