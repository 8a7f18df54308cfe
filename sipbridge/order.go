package sipbridge

import "sync"

// dialogOrder runs the requests of one dialog (one Call-ID) one after the other, in the
// order they arrived, and those of different dialogs concurrently: the last link of the
// admission chain. Every transport reads a socket, connection or stream in one goroutine
// and queues each admitted request here as it reads it, so that an ACK always leaves the
// node before the BYE that followed it, whatever goroutine serves either. A dialog's
// queue has a goroutine while it holds requests; it may block (a location lookup) without
// holding up other dialogs.
type dialogOrder struct {
	mu    sync.Mutex
	q     map[string]*dialogQueue
	spawn func(func()) bool // starts a goroutine; false when the owner is closing
	serve func(*inbound)
}

type dialogQueue struct {
	items []*inbound
}

func newDialogOrder(spawn func(func()) bool, serve func(*inbound)) *dialogOrder {
	return &dialogOrder{q: map[string]*dialogQueue{}, spawn: spawn, serve: serve}
}

// push queues in behind everything queued under key.
func (o *dialogOrder) push(key string, in *inbound) {
	o.mu.Lock()
	if dq, ok := o.q[key]; ok {
		dq.items = append(dq.items, in)
		o.mu.Unlock()
		return
	}
	dq := &dialogQueue{items: []*inbound{in}}
	o.q[key] = dq
	o.mu.Unlock()
	if !o.spawn(func() { o.work(key, dq) }) {
		o.mu.Lock()
		delete(o.q, key)
		o.mu.Unlock()
	}
}

func (o *dialogOrder) work(key string, dq *dialogQueue) {
	for {
		o.mu.Lock()
		if len(dq.items) == 0 {
			delete(o.q, key)
			o.mu.Unlock()
			return
		}
		in := dq.items[0]
		dq.items[0] = nil
		dq.items = dq.items[1:]
		o.mu.Unlock()
		o.serve(in)
	}
}

// pending returns the number of dialogs with queued requests (tests).
func (o *dialogOrder) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.q)
}
