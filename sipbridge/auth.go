package sipbridge

import (
	"bufio"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/hiersip/hiersip/domains"
)

const nonceLifetime = 5 * time.Minute

// Users is a digest-authentication user database: per user, a realm and the MD5 hash
// HA1 = MD5(user:realm:password). The file form is htdigest's: one "user:realm:ha1" a line.
type Users struct {
	mu     sync.RWMutex
	users  map[string]userEntry
	secret [32]byte
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

// Add adds or replaces a user with a clear-text password.
func (u *Users) Add(user, realm, password string) { u.AddHA1(user, realm, HA1(user, realm, password)) }

// AddHA1 adds or replaces a user with a precomputed HA1.
func (u *Users) AddHA1(user, realm, ha1 string) {
	u.mu.Lock()
	u.users[user] = userEntry{realm: realm, ha1: strings.ToLower(ha1)}
	u.mu.Unlock()
}

// ReadUsers parses htdigest lines ("user:realm:ha1", optionally ":user-key", see
// domains.ParseUserKey); blank lines and '#' comments are skipped.
func ReadUsers(r io.Reader) (*Users, error) {
	u := NewUsers()
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if (len(f) != 3 && len(f) != 4) || f[0] == "" || len(f[2]) != 32 {
			return nil, fmt.Errorf("%w: users line %d: want user:realm:md5-ha1[:user-key]", ErrBadOption, n)
		}
		if len(f) == 4 { // the user key (domains.ParseUserKey) is the node's; check it here
			if _, err := domains.ParseUserKey(f[3]); err != nil {
				return nil, fmt.Errorf("%w: users line %d: %v", ErrBadOption, n, err)
			}
		}
		if _, err := hex.DecodeString(f[2]); err != nil {
			return nil, fmt.Errorf("%w: users line %d: ha1 is not hex", ErrBadOption, n)
		}
		u.AddHA1(f[0], f[1], f[2])
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

func (u *Users) nonce(now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 16)
	m := hmac.New(sha256.New, u.secret[:])
	m.Write([]byte(ts))
	return ts + "." + hex.EncodeToString(m.Sum(nil))[:32]
}

func (u *Users) nonceValid(n string, now time.Time) bool {
	ts, _, ok := strings.Cut(n, ".")
	if !ok {
		return false
	}
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return false
	}
	t := time.Unix(sec, 0)
	if now.Sub(t) > nonceLifetime || t.After(now.Add(time.Minute)) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(u.nonce(t)), []byte(n)) == 1
}

// check verifies the Authorization of req for aor. It returns 0 when accepted, else the
// status, reason and (for 401) the WWW-Authenticate challenge to send.
func (u *Users) check(req *sip.Request, aor domains.AOR, domain string) (int, string, string) {
	u.mu.RLock()
	ent, known := u.users[aor.User]
	u.mu.RUnlock()
	realm := domain
	if known {
		realm = ent.realm
	}
	now := time.Now()
	challenge := func(stale bool) (int, string, string) {
		c := &digest.Challenge{Realm: realm, Nonce: u.nonce(now), Algorithm: "MD5", QOP: []string{"auth"}, Stale: stale}
		return 401, "Unauthorized", c.String()
	}
	h := req.GetHeader("Authorization")
	if h == nil {
		return challenge(false)
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return 400, "Bad Request: malformed Authorization", ""
	}
	// Known and unknown users must get the same answers: a stale nonce is challenged anew
	// before the user is looked at, and every refusal is the same 403.
	if !u.nonceValid(cred.Nonce, now) {
		return challenge(true)
	}
	if !known || cred.Username != aor.User || cred.Realm != realm {
		return 403, "Forbidden", ""
	}
	chal := &digest.Challenge{Realm: realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm, Opaque: cred.Opaque}
	if cred.QOP != "" {
		chal.QOP = []string{cred.QOP}
	}
	want, err := digest.Digest(chal, digest.Options{
		Method: string(req.Method), URI: cred.URI, Username: cred.Username,
		A1: ent.ha1, Cnonce: cred.Cnonce, Count: cred.Nc,
	})
	if err != nil || subtle.ConstantTimeCompare([]byte(want.Response), []byte(cred.Response)) != 1 {
		return 403, "Forbidden", ""
	}
	return 0, "", ""
}
