package sipbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/push"
)

// WithRegistrationStore keeps the registrar's contacts in the file at path, so that a node
// restarted — also after a crash — serves the user agents registered with it before
// without waiting for them to register again, until their registrations expire. The file
// is rewritten after changes — at most once a second, less often for a large file so that
// the node writes at most 1 MiB/s — as a temporary file synced and renamed over the old one
// (a crash leaves the old or the new file, never a torn one), and once more on Close. On New the live contacts in it are restored and published
// again with the Locator. A file that cannot be read or parsed is set aside as
// path+".corrupt" with a warning and the node starts with no registrations. "" (the
// default) keeps nothing.
func WithRegistrationStore(path string) Option {
	return func(c *config) error { c.regStore = path; return nil }
}

const (
	storeVersion      = 1
	maxStoreBytes     = 64 << 20
	maxStoredContacts = 100_000
	storeMinGap       = time.Second
	storeWriteRate    = 1 << 20 // bytes per second a busy registrar writes at most
)

// storedFile is the registration store's file.
type storedFile struct {
	Version  int             `json:"version"`
	Domain   string          `json:"domain"`
	Saved    time.Time       `json:"saved"`
	Contacts []storedContact `json:"contacts"`
}

type storedContact struct {
	AOR       string       `json:"aor"`
	URI       string       `json:"uri"`
	Expires   time.Time    `json:"expires"`
	CallID    string       `json:"call_id"`
	CSeq      uint32       `json:"cseq"`
	Source    string       `json:"source,omitempty"`
	Transport string       `json:"transport,omitempty"`
	NAT       bool         `json:"nat,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	Since     time.Time    `json:"since,omitzero"`
	Push      *push.Params `json:"push,omitempty"` // RFC 8599 (push.go)
}

// regStore writes the registrar's state to its file.
type regStore struct {
	path   string
	minGap time.Duration
	kick   chan struct{}
	dirty  atomic.Bool
	mu     sync.Mutex // one save at a time
	size   atomic.Int64
}

func newRegStore(path string) *regStore {
	return &regStore{path: path, minGap: storeMinGap, kick: make(chan struct{}, 1)}
}

// changed tells the store that the registrations changed.
func (r *registrar) changed() {
	s := r.store
	if s == nil {
		return
	}
	s.dirty.Store(true)
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// snapshot returns the live contacts to store.
func (r *registrar) snapshot() storedFile {
	now := r.b.now()
	f := storedFile{Version: storeVersion, Domain: r.b.domain, Saved: now.UTC()}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.aors {
		for _, c := range e.contacts {
			if !c.expires.After(now) || len(f.Contacts) >= maxStoredContacts {
				continue
			}
			f.Contacts = append(f.Contacts, storedContact{AOR: e.aor.String(), URI: c.uri.String(), Expires: c.expires.UTC(),
				CallID: c.callID, CSeq: c.cseq, Source: c.src, Transport: c.tp, NAT: c.nat, Instance: c.instance, Since: c.since.UTC(), Push: c.push})
		}
	}
	return f
}

// save writes f atomically: a synced temporary file renamed over the old one.
func (s *regStore) save(f storedFile) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("sipbridge: registration store: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("sipbridge: registration store: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("sipbridge: registration store: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("sipbridge: registration store: %w", err)
	}
	if err = os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("sipbridge: registration store: %w", err)
	}
	s.size.Store(int64(len(data)))
	return nil
}

// gap is the time between two saves: minGap, longer for a large file, so that a registrar
// with many phones refreshing writes at most storeWriteRate.
func (s *regStore) gap() time.Duration {
	return max(s.minGap, time.Duration(s.size.Load())*time.Second/storeWriteRate)
}

// flush saves the registrations if they changed since the last save.
func (r *registrar) flush() error {
	if r.store == nil || !r.store.dirty.Swap(false) {
		return nil
	}
	if err := r.store.save(r.snapshot()); err != nil {
		r.store.dirty.Store(true)
		return err
	}
	return nil
}

// runStore saves the registrations after changes, at most once per gap, until ctx ends.
func (r *registrar) runStore(ctx context.Context) {
	s := r.store
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		if wait := r.b.cfg.clock.Until(last.Add(s.gap())); wait > 0 {
			t := r.b.cfg.clock.Timer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if err := r.flush(); err != nil {
			r.b.log.Warn("saving registrations failed", "file", s.path, "err", err)
		}
		last = r.b.now()
	}
}

// errCorrupt marks a store file that cannot be used.
var errCorrupt = errors.New("sipbridge: corrupt registration store")

// load restores the live contacts of the store's file; a file that cannot be used is set
// aside. It returns the AORs restored.
func (r *registrar) load() []*aorEntry {
	s := r.store
	f, err := readStore(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		bad := s.path + ".corrupt"
		if rerr := os.Rename(s.path, bad); rerr != nil {
			r.b.log.Warn("registration store unreadable, ignored", "file", s.path, "err", err, "rename", rerr)
		} else {
			r.b.log.Warn("registration store unreadable, set aside: starting without registrations", "file", s.path, "moved_to", bad, "err", err)
		}
		return nil
	case f.Domain != r.b.domain:
		r.b.log.Warn("registration store is of another domain, ignored", "file", s.path, "store_domain", f.Domain)
		return nil
	}
	now := r.b.now()
	maxUntil := now.Add(r.b.cfg.maxExp)
	r.mu.Lock()
	defer r.mu.Unlock()
	var restored []*aorEntry
	skipped := 0
	for _, sc := range f.Contacts {
		c, aor, ok := r.restoreContact(sc, now, maxUntil)
		if !ok {
			skipped++
			continue
		}
		e := r.aors[aor.String()]
		if e == nil {
			e = &aorEntry{aor: aor}
			r.aors[aor.String()] = e
			restored = append(restored, e)
		}
		dup := false
		for _, old := range e.contacts {
			dup = dup || old.key == c.key
		}
		if !dup {
			e.contacts = append(e.contacts, c)
			r.indexLocked(c)
		}
	}
	if skipped > 0 {
		r.b.log.Warn("registration store: entries skipped", "file", s.path, "skipped", skipped)
	}
	return restored
}

// restoreContact checks one stored contact; expired ones and bad ones are dropped.
func (r *registrar) restoreContact(sc storedContact, now, maxUntil time.Time) (*contactEntry, domains.AOR, bool) {
	aor, err := domains.ParseAOR(sc.AOR)
	if err != nil || !aor.InDomain(r.b.domain) || !sc.Expires.After(now) {
		return nil, aor, false
	}
	var u sip.Uri
	if err := sip.ParseUri(sc.URI, &u); err != nil || u.Host == "" || r.b.isMine(&u) {
		return nil, aor, false
	}
	if sc.Source != "" {
		if _, err := netip.ParseAddrPort(sc.Source); err != nil {
			return nil, aor, false
		}
	}
	if sc.Transport != "" && sc.Transport != "udp" && !isStream(sc.Transport) {
		return nil, aor, false
	}
	exp := sc.Expires
	if exp.After(maxUntil) {
		exp = maxUntil
	}
	return &contactEntry{uri: u, key: contactKey(&u), addr: uriAddrKey(&u), expires: exp, callID: sc.CallID, cseq: sc.CSeq,
		src: sc.Source, tp: sc.Transport, nat: sc.NAT && sc.Source != "", instance: validInstance(sc.Instance), since: sc.Since, push: validPush(sc.Push)}, aor, true
}

// readStore reads and parses the store file (at most maxStoreBytes).
func readStore(path string) (storedFile, error) {
	var f storedFile
	fh, err := os.Open(path)
	if err != nil {
		return f, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxStoreBytes+1))
	if err != nil {
		return f, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if len(data) > maxStoreBytes {
		return f, fmt.Errorf("%w: larger than %d bytes", errCorrupt, maxStoreBytes)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if f.Version != storeVersion {
		return f, fmt.Errorf("%w: version %d, want %d", errCorrupt, f.Version, storeVersion)
	}
	if len(f.Contacts) > maxStoredContacts {
		f.Contacts = f.Contacts[:maxStoredContacts]
	}
	return f, nil
}

// republish publishes the restored AORs again with the Locator; an AOR the node may no
// longer register (ErrForbidden) is dropped. Other failures are left to the Locator,
// which re-stores what it was given (a node's republish loop).
func (r *registrar) republish(ctx context.Context, es []*aorEntry) {
	n := 0
	for _, e := range es {
		pctx, cancel := context.WithTimeout(ctx, r.b.cfg.locTimeout)
		err := r.publish(pctx, e)
		cancel()
		switch {
		case errors.Is(err, ErrForbidden):
			r.mu.Lock()
			delete(r.aors, e.aor.String())
			r.mu.Unlock()
			r.changed()
			r.b.log.Info("restored registration refused", "aor", e.aor.String(), "err", err)
		case err != nil:
			r.b.log.Debug("publishing a restored registration failed", "aor", e.aor.String(), "err", err)
		default:
			n++
		}
		if ctx.Err() != nil {
			return
		}
	}
	r.b.log.Info("registrations restored", "aors", len(es), "published", n)
}

// validPush returns stored push parameters that are still valid, nil otherwise.
func validPush(p *push.Params) *push.Params {
	if p == nil || p.Validate() != nil {
		return nil
	}
	return p
}
