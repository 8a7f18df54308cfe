package bootstrap

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Limits of the peer cache.
const (
	PeerCacheMaxPeers = 64                 // peers kept, most recently seen first
	PeerCacheMaxAddrs = 8                  // addresses kept per peer
	PeerCacheMaxAge   = 7 * 24 * time.Hour // entries not seen for longer are dropped
	PeerCacheMaxSize  = 1 << 20            // bytes of a cache file that Load accepts
)

// ErrPeerCacheCorrupt is returned by PeerCache.Load for a file that cannot be
// used; the cache is then empty and the next Save replaces the file.
var ErrPeerCacheCorrupt = errors.New("bootstrap: corrupt peer cache")

// peerCacheFile is the JSON form of the cache file:
//
//	{"version": 1, "domain": "pastry", "saved": "2026-11-24T19:00:00Z",
//	 "peers": [{"id": "12D3KooW…", "addrs": ["/ip4/192.0.2.7/tcp/4001"],
//	            "seen": "2026-11-24T18:59:00Z"}]}
type peerCacheFile struct {
	Version int              `json:"version"`
	Domain  string           `json:"domain"`
	Saved   time.Time        `json:"saved"`
	Peers   []peerCacheEntry `json:"peers"`
}

type peerCacheEntry struct {
	ID    string    `json:"id"`
	Addrs []string  `json:"addrs"`
	Seen  time.Time `json:"seen"`
}

type peerCacheItem struct {
	info peer.AddrInfo
	seen time.Time
}

// PeerCache is the draft's "cached address" bootstrap method: the addresses
// of domain peers seen recently, kept in a JSON file across runs. It is safe
// for concurrent use.
type PeerCache struct {
	path   string
	domain string
	self   peer.ID

	now func() time.Time // the bootstrapper's clock

	mu    sync.Mutex
	peers map[peer.ID]peerCacheItem
}

// NewPeerCache returns an empty cache of domain's peers kept in path; self
// is never cached.
func NewPeerCache(path, domain string, self peer.ID) *PeerCache {
	return &PeerCache{path: path, domain: domain, self: self, now: time.Now, peers: make(map[peer.ID]peerCacheItem)}
}

// Load reads the file. A missing file is an empty cache and no error. A
// file that cannot be used (bad JSON, another domain, too large) leaves the
// cache empty and returns an error wrapping ErrPeerCacheCorrupt; the next
// Save replaces it. Bad entries in an otherwise good file are skipped.
func (c *PeerCache) Load() error {
	data, err := os.ReadFile(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(data) > PeerCacheMaxSize {
		return fmt.Errorf("%w: %s: %d bytes, limit %d", ErrPeerCacheCorrupt, c.path, len(data), PeerCacheMaxSize)
	}
	var f peerCacheFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrPeerCacheCorrupt, c.path, err)
	}
	if f.Version != 1 {
		return fmt.Errorf("%w: %s: version %d, want 1", ErrPeerCacheCorrupt, c.path, f.Version)
	}
	if f.Domain != c.domain {
		return fmt.Errorf("%w: %s: holds domain %q, want %q", ErrPeerCacheCorrupt, c.path, f.Domain, c.domain)
	}
	var infos []peer.AddrInfo
	var seen []time.Time
	for _, e := range f.Peers {
		id, err := peer.Decode(e.ID)
		if err != nil {
			continue
		}
		info := peer.AddrInfo{ID: id}
		for _, s := range e.Addrs {
			if a, err := ma.NewMultiaddr(s); err == nil {
				info.Addrs = append(info.Addrs, a)
			}
		}
		infos = append(infos, info)
		seen = append(seen, e.Seen)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, info := range infos {
		c.observeLocked(info, seen[i])
	}
	c.pruneLocked(c.now())
	return nil
}

// Observe records infos as seen at now.
func (c *PeerCache) Observe(infos []peer.AddrInfo, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, info := range infos {
		c.observeLocked(info, now)
	}
	c.pruneLocked(now)
}

func (c *PeerCache) observeLocked(info peer.AddrInfo, seen time.Time) {
	if info.ID == "" || info.ID == c.self || len(info.Addrs) == 0 {
		return
	}
	if old, ok := c.peers[info.ID]; ok && old.seen.After(seen) {
		return
	}
	var addrs []ma.Multiaddr
	for _, a := range info.Addrs {
		if a == nil {
			continue
		}
		// Keep transport addresses only: strip a trailing /p2p/<id>.
		if t, id := peer.SplitAddr(a); t != nil && (id == "" || id == info.ID) {
			a = t
		}
		if !slices.ContainsFunc(addrs, a.Equal) && len(addrs) < PeerCacheMaxAddrs {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) > 0 {
		c.peers[info.ID] = peerCacheItem{info: peer.AddrInfo{ID: info.ID, Addrs: addrs}, seen: seen}
	}
}

func (c *PeerCache) sortedLocked() []peerCacheItem {
	out := make([]peerCacheItem, 0, len(c.peers))
	for _, p := range c.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b peerCacheItem) int {
		if d := b.seen.Compare(a.seen); d != 0 {
			return d
		}
		return cmp.Compare(a.info.ID, b.info.ID)
	})
	return out
}

func (c *PeerCache) pruneLocked(now time.Time) {
	for id, p := range c.peers {
		if now.Sub(p.seen) > PeerCacheMaxAge {
			delete(c.peers, id)
		}
	}
	if len(c.peers) > PeerCacheMaxPeers {
		for _, p := range c.sortedLocked()[PeerCacheMaxPeers:] {
			delete(c.peers, p.info.ID)
		}
	}
}

// AddrInfos returns the cached peers, most recently seen first.
func (c *PeerCache) AddrInfos() []peer.AddrInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []peer.AddrInfo
	for _, p := range c.sortedLocked() {
		out = append(out, peer.AddrInfo{ID: p.info.ID, Addrs: slices.Clone(p.info.Addrs)})
	}
	return out
}

// Save writes the cache atomically: to a temporary file in the same
// directory, synced, then renamed over the old file. An empty cache does not
// overwrite an existing file.
func (c *PeerCache) Save() error {
	c.mu.Lock()
	f := peerCacheFile{Version: 1, Domain: c.domain, Saved: c.now().UTC(), Peers: []peerCacheEntry{}}
	for _, p := range c.sortedLocked() {
		e := peerCacheEntry{ID: p.info.ID.String(), Seen: p.seen.UTC()}
		for _, a := range p.info.Addrs {
			e.Addrs = append(e.Addrs, a.String())
		}
		f.Peers = append(f.Peers, e)
	}
	c.mu.Unlock()
	if len(f.Peers) == 0 {
		if _, err := os.Stat(c.path); err == nil {
			return nil
		}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return peerCacheWriteFile(c.path, append(data, '\n'), 0o600)
}

func peerCacheWriteFile(path string, data []byte, perm os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
