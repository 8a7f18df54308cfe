package sipbridge

import (
	"bufio"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hiersip/hiersip/domains"
)

const nonceLifetime = 5 * time.Minute

// Users is a digest-authentication user database: per user, a realm and the hashes
// HA1 = MD5(user:realm:password) and SHA-256(user:realm:password) (one of them, or both).
// The file form is htdigest's, one "user:realm:ha1" a line, where ha1 may also be
// "md5-ha1,sha256-ha1" (see digest.go, UsersLine).
type Users struct {
	mu     sync.RWMutex
	users  map[string]userEntry
	secret [32]byte
	dg     digestState // SHA-256 HA1s and nonces in use (digest.go)
}

type userEntry struct{ realm, ha1 string }

// NewUsers returns an empty user database.
func NewUsers() *Users {
	u := &Users{users: map[string]userEntry{}}
	_, _ = rand.Read(u.secret[:])
	return u
}

// HA1 computes MD5(user:realm:password) in hex.
func HA1(user, realm, password string) string {
	s := md5.Sum([]byte(user + ":" + realm + ":" + password))
	return hex.EncodeToString(s[:])
}

// Add adds or replaces a user with a clear-text password (both HA1s are kept, not the password).
func (u *Users) Add(user, realm, password string) {
	_ = u.AddHA1s(user, realm, HA1(user, realm, password), HA1SHA256(user, realm, password))
}

// AddHA1 adds or replaces a user with a precomputed MD5 HA1.
func (u *Users) AddHA1(user, realm, ha1 string) {
	u.mu.Lock()
	u.users[user] = userEntry{realm: realm, ha1: strings.ToLower(ha1)}
	u.mu.Unlock()
	u.dg.mu.Lock()
	delete(u.dg.sha, user)
	u.dg.mu.Unlock()
}

// Replace swaps u's users for those of src, as a reload of the users file does: requests
// checked after it see only src's users; nonces issued before stay valid.
func (u *Users) Replace(src *Users) {
	src.mu.RLock()
	m := maps.Clone(src.users)
	src.mu.RUnlock()
	src.dg.mu.Lock()
	sha := maps.Clone(src.dg.sha)
	src.dg.mu.Unlock()
	u.mu.Lock()
	u.users = m
	u.mu.Unlock()
	u.dg.mu.Lock()
	u.dg.sha = sha
	u.dg.mu.Unlock()
}

// Len is the number of users.
func (u *Users) Len() int {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return len(u.users)
}

// ReadUsers parses htdigest lines ("user:realm:ha1", ha1 an MD5 HA1, a SHA-256 HA1 or both
// separated by a comma; optionally ":user-key", see domains.ParseUserKey); blank lines and
// '#' comments are skipped.
func ReadUsers(r io.Reader) (*Users, error) {
	u := NewUsers()
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if (len(f) != 3 && len(f) != 4) || f[0] == "" {
			return nil, fmt.Errorf("%w: users line %d: want user:realm:ha1[:user-key]", ErrBadOption, n)
		}
		if len(f) == 4 { // the user key (domains.ParseUserKey) is the node's; check it here
			if _, err := domains.ParseUserKey(f[3]); err != nil {
				return nil, fmt.Errorf("%w: users line %d: %v", ErrBadOption, n, err)
			}
		}
		if err := u.addLine(f[0], f[1], f[2]); err != nil {
			return nil, fmt.Errorf("users line %d: %w", n, err)
		}
	}
	return u, sc.Err()
}

// LoadUsers reads a users file (see ReadUsers).
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadUsers(f)
}
