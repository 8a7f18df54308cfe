package sipbridge

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/hiersip/hiersip/domains"
)

// Digest authentication as RFC 7616 and RFC 8760 intend.
//
// Nonces are "<unix time, hex>.<16 random hex digits>.<HMAC-SHA256 of both under a secret of
// the Users>", valid for 5 minutes. A nonce is remembered from its first successful use
// with its nonce count: a later request must carry a higher nc (credentials without qop, of
// RFC 2069, may use a nonce once), so a captured Authorization replayed — from anywhere, with
// any Call-ID — is answered 401 with stale=true and a fresh nonce, like an expired nonce. The
// table of used nonces is bounded (nonceTableMax); when it is full the oldest entry goes, and
// every nonce issued before it counts as used from then on (it fails closed).
//
// The users file holds HA1 hashes, never passwords: MD5 (32 hex digits) and, for RFC 8760,
// SHA-256 (64 hex digits) of "user:realm:password". A line's third field is one HA1 or both,
// separated by a comma: "alice:pastry:<md5>,<sha256>" (UsersLine writes it); htdigest's
// "user:realm:<md5>" lines stay valid. The node challenges with SHA-256 when every user has a
// SHA-256 HA1, with MD5 when every user has an MD5 one, with both (SHA-256 first, RFC 8760
// §2.4) when both hold; every user gets the same challenges, so that they cannot be told apart.
//
// Wrong credentials are checked at most Limits.AuthFailures times per window per source IP
// and, as well, per account (the user part of the AOR): six sources cannot guess six times
// faster. A source that authenticated as an account in the last accountTrust keeps using
// that account even while it is throttled, so that a guesser cannot lock its owner out.
// Failed, stale and throttled attempts are logged (through the log guard) and counted.

const (
	algMD5    = "MD5"
	algSHA256 = "SHA-256"
	// nonceTableMax bounds the nonces remembered with their nonce counts.
	nonceTableMax = 16384
	// accountTrust is how long a source that authenticated as an account skips the
	// account's throttle (its own per-source budget still applies).
	accountTrust = 24 * time.Hour
	// accountTrustMax bounds the (account, source) pairs remembered.
	accountTrustMax = 16384
)

// HA1SHA256 computes SHA-256(user:realm:password) in hex, the HA1 of RFC 8760.
func HA1SHA256(user, realm, password string) string {
	s := sha256.Sum256([]byte(user + ":" + realm + ":" + password))
	return hex.EncodeToString(s[:])
}

// UsersLine returns the users-file line of user in realm with password:
// "user:realm:<MD5 HA1>,<SHA-256 HA1>" (see LoadUsers). The password itself is not stored.
func UsersLine(user, realm, password string) string {
	return user + ":" + realm + ":" + HA1(user, realm, password) + "," + HA1SHA256(user, realm, password)
}

// digestState is the part of Users that RFC 7616/8760 need: SHA-256 HA1s and the nonces
// in use.
type digestState struct {
	mu          sync.Mutex
	sha         map[string]string // user → SHA-256 HA1
	used        map[string]*nonceUse
	fifo        []string // used nonces, oldest first
	staleBefore time.Time
}

type nonceUse struct {
	issued time.Time
	nc     int  // highest nonce count accepted
	noQOP  bool // used without qop: once only
}

// AddHA1s adds or replaces a user with precomputed HA1 hashes, each MD5 (32 hex digits) or
// SHA-256 (64); an error names a hash of another length or not in hex.
func (u *Users) AddHA1s(user, realm string, ha1s ...string) error {
	var md5h, shah string
	for _, h := range ha1s {
		h = strings.ToLower(strings.TrimSpace(h))
		if _, err := hex.DecodeString(h); err != nil {
			return fmt.Errorf("%w: ha1 is not hex", ErrBadOption)
		}
		switch len(h) {
		case 32:
			md5h = h
		case 64:
			shah = h
		default:
			return fmt.Errorf("%w: ha1 of %d hex digits: want 32 (MD5) or 64 (SHA-256)", ErrBadOption, len(h))
		}
	}
	if md5h == "" && shah == "" {
		return fmt.Errorf("%w: no ha1", ErrBadOption)
	}
	u.mu.Lock()
	u.users[user] = userEntry{realm: realm, ha1: md5h}
	u.mu.Unlock()
	u.dg.mu.Lock()
	if u.dg.sha == nil {
		u.dg.sha = map[string]string{}
	}
	if shah == "" {
		delete(u.dg.sha, user)
	} else {
		u.dg.sha[user] = shah
	}
	u.dg.mu.Unlock()
	return nil
}

// addLine adds a users-file entry: ha1s is the third field, one HA1 or several separated
// by commas.
func (u *Users) addLine(user, realm, ha1s string) error {
	if user == "" {
		return fmt.Errorf("%w: empty user", ErrBadOption)
	}
	return u.AddHA1s(user, realm, strings.Split(ha1s, ",")...)
}

// WithDigestAlgorithms sets the digest algorithms the node challenges with, the preferred
// first: "SHA-256" (RFC 8760) and "MD5", limited to the algorithms every user has an HA1
// for. The default is MD5 alone (SHA-256 alone when some user has no MD5 HA1), as Kamailio
// and Asterisk challenge by default: many phones refuse to authenticate at all when a
// challenge names an algorithm they do not know (baresip 1.0 with libre 1.x, sipvicious's
// svcrack). Give "SHA-256", "MD5" to offer both, SHA-256 first, to phones that follow RFC
// 8760.
func WithDigestAlgorithms(algs ...string) Option {
	return func(c *config) error {
		if len(algs) == 0 {
			return fmt.Errorf("%w: no digest algorithm", ErrBadOption)
		}
		c.digestAlgs = nil
		for _, a := range algs {
			switch a = strings.ToUpper(strings.TrimSpace(a)); a {
			case algMD5, algSHA256:
				c.digestAlgs = append(c.digestAlgs, a)
			default:
				return fmt.Errorf("%w: digest algorithm %q: want SHA-256 or MD5", ErrBadOption, a)
			}
		}
		return nil
	}
}

// algorithms lists the digest algorithms the node challenges with, the preferred first:
// pref limited to those every user has an HA1 for, or pref itself when no algorithm is
// common to all. With pref nil (see WithDigestAlgorithms): MD5 when every user has an MD5
// HA1, else SHA-256 when every user has that, else both.
func (u *Users) algorithms(pref []string) []string {
	if pref == nil {
		for _, a := range []string{algMD5, algSHA256} {
			if u.everyUserHas(a) {
				return []string{a}
			}
		}
		return []string{algSHA256, algMD5}
	}
	var out []string
	for _, a := range pref {
		if u.everyUserHas(a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return pref
	}
	return out
}

// everyUserHas reports whether every user (at least one) has an HA1 for alg.
func (u *Users) everyUserHas(alg string) bool {
	u.mu.RLock()
	n, md5n := len(u.users), 0
	for _, e := range u.users {
		if e.ha1 != "" {
			md5n++
		}
	}
	u.mu.RUnlock()
	if alg == algMD5 {
		return md5n == n
	}
	u.dg.mu.Lock()
	defer u.dg.mu.Unlock()
	return len(u.dg.sha) == n && n > 0
}

// ha1For returns user's HA1 for alg ("" when the user has none).
func (u *Users) ha1For(user, alg string) string {
	if alg == algSHA256 {
		u.dg.mu.Lock()
		defer u.dg.mu.Unlock()
		return u.dg.sha[user]
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	return u.users[user].ha1
}

func (u *Users) nonce(now time.Time) string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	base := strconv.FormatInt(now.Unix(), 16) + "." + hex.EncodeToString(r[:])
	return base + "." + u.nonceMAC(base)
}

func (u *Users) nonceMAC(base string) string {
	m := hmac.New(sha256.New, u.secret[:])
	m.Write([]byte(base))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// nonceTime returns when n was issued, if it is one of ours and not expired.
func (u *Users) nonceTime(n string, now time.Time) (time.Time, bool) {
	i := strings.LastIndexByte(n, '.')
	if i < 0 {
		return time.Time{}, false
	}
	base, mac := n[:i], n[i+1:]
	ts, _, ok := strings.Cut(base, ".")
	if !ok {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	t := time.Unix(sec, 0)
	if now.Sub(t) > nonceLifetime || t.After(now.Add(time.Minute)) {
		return time.Time{}, false
	}
	if subtle.ConstantTimeCompare([]byte(u.nonceMAC(base)), []byte(mac)) != 1 {
		return time.Time{}, false
	}
	return t, true
}

// fresh reports whether nonce n (issued at issued) may be used with nonce count nc.
func (u *Users) fresh(n string, issued time.Time, nc int, qop bool) bool {
	u.dg.mu.Lock()
	defer u.dg.mu.Unlock()
	e := u.dg.used[n]
	if e == nil {
		return issued.After(u.dg.staleBefore)
	}
	return qop && !e.noQOP && nc > e.nc
}

// use records the successful use of nonce n with nonce count nc.
func (u *Users) use(n string, issued time.Time, nc int, qop bool, now time.Time) {
	u.dg.mu.Lock()
	defer u.dg.mu.Unlock()
	if u.dg.used == nil {
		u.dg.used = map[string]*nonceUse{}
	}
	if e := u.dg.used[n]; e != nil {
		e.nc = max(e.nc, nc)
		e.noQOP = e.noQOP || !qop
		return
	}
	// forget expired nonces, then the oldest while full (failing closed, see staleBefore)
	for len(u.dg.fifo) > 0 {
		old := u.dg.used[u.dg.fifo[0]]
		if old != nil && now.Sub(old.issued) <= nonceLifetime && len(u.dg.used) < nonceTableMax {
			break
		}
		if old != nil && old.issued.After(u.dg.staleBefore) {
			u.dg.staleBefore = old.issued
		}
		delete(u.dg.used, u.dg.fifo[0])
		u.dg.fifo[0] = ""
		u.dg.fifo = u.dg.fifo[1:]
	}
	u.dg.used[n] = &nonceUse{issued: issued, nc: nc, noQOP: !qop}
	u.dg.fifo = append(u.dg.fifo, n)
}

// digestVerdict is the outcome of checking a request's credentials.
type digestVerdict int

const (
	digestOK        digestVerdict = iota
	digestChallenge               // no credentials: 401
	digestStale                   // unknown, expired or used nonce: 401 stale=true
	digestMalformed               // 400
	digestWrong                   // 403
)

// challenges returns the WWW-Authenticate values for realm, one per algorithm, joined by
// "\n" (challengeHeaders splits them).
func (u *Users) challenges(realm string, algs []string, stale bool, now time.Time) string {
	nonce := u.nonce(now)
	var out []string
	for _, alg := range algs {
		c := &digest.Challenge{Realm: realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, c.String())
	}
	return strings.Join(out, "\n")
}

// challengeHeaders turns the challenges of Users.check into WWW-Authenticate headers.
func challengeHeaders(chal string) []sip.Header {
	var hs []sip.Header
	for _, c := range strings.Split(chal, "\n") {
		if c != "" {
			hs = append(hs, sip.NewHeader("WWW-Authenticate", c))
		}
	}
	return hs
}

// check verifies the Authorization of req for aor. It returns the verdict and, for 401, the
// challenges.
func (u *Users) check(req *sip.Request, aor domains.AOR, domain string, pref []string, now time.Time) (digestVerdict, string) {
	algs := u.algorithms(pref)
	u.mu.RLock()
	ent, known := u.users[aor.User]
	u.mu.RUnlock()
	realm := domain
	if known {
		realm = ent.realm
	}
	h := req.GetHeader("Authorization")
	if h == nil {
		return digestChallenge, u.challenges(realm, algs, false, now)
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return digestMalformed, ""
	}
	// Known and unknown users must get the same answers: nonces are judged before the user
	// is looked at, and every refusal is the same 403.
	issued, ok := u.nonceTime(cred.Nonce, now)
	qop := cred.QOP != ""
	if !ok || !u.fresh(cred.Nonce, issued, cred.Nc, qop) {
		return digestStale, u.challenges(realm, algs, true, now)
	}
	alg := strings.ToUpper(cred.Algorithm)
	if alg == "" {
		alg = algMD5
	}
	if !slices.Contains(algs, alg) || cred.Userhash || (qop && (cred.QOP != "auth" || cred.Nc < 1)) ||
		!known || cred.Username != aor.User || cred.Realm != realm {
		return digestWrong, ""
	}
	ha1 := u.ha1For(aor.User, alg)
	if ha1 == "" {
		return digestWrong, ""
	}
	chal := &digest.Challenge{Realm: realm, Nonce: cred.Nonce, Algorithm: alg, Opaque: cred.Opaque}
	if qop {
		chal.QOP = []string{cred.QOP}
	}
	want, err := digest.Digest(chal, digest.Options{
		Method: string(req.Method), URI: cred.URI, Username: cred.Username,
		A1: ha1, Cnonce: cred.Cnonce, Count: cred.Nc,
	})
	if err != nil || subtle.ConstantTimeCompare([]byte(want.Response), []byte(cred.Response)) != 1 {
		return digestWrong, ""
	}
	u.use(cred.Nonce, issued, cred.Nc, qop, now)
	return digestOK, ""
}

// ---- throttling and accounting

// authGuard throttles wrong credentials per account, on top of the per-source throttle.
type authGuard struct {
	accounts *sourceTable // per account: the auth bucket only
	mu       sync.Mutex
	trusted  map[string]time.Time // account|source → last success
}

func newAuthGuard(l Limits) *authGuard {
	return &authGuard{accounts: newSourceTable(0, 0, l), trusted: map[string]time.Time{}}
}

func (g *authGuard) isTrusted(account, source string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	at, ok := g.trusted[account+"|"+source]
	return ok && now.Sub(at) < accountTrust
}

func (g *authGuard) succeeded(account, source string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	key := account + "|" + source
	if _, ok := g.trusted[key]; !ok && len(g.trusted) >= accountTrustMax {
		for k, at := range g.trusted {
			if now.Sub(at) >= accountTrust || len(g.trusted) >= accountTrustMax {
				delete(g.trusted, k)
			}
			if len(g.trusted) < accountTrustMax*7/8 {
				break
			}
		}
	}
	g.trusted[key] = now
}

// authorize runs the digest check of req for aor from source key, throttling sources and
// accounts that keep sending wrong credentials. It returns 0 when accepted, else the status,
// reason and (for 401) the challenges to answer (challengeHeaders).
func (b *Bridge) authorize(req *sip.Request, aor domains.AOR, key string) (int, string, string) {
	l, now := b.lim, time.Now()
	account := strings.ToLower(aor.User)
	hasCreds := req.GetHeader("Authorization") != nil
	throttled := func(by string) (int, string, string) {
		l.stats.authThrottled.Add(1)
		if by == "account" {
			l.stats.authAccountThrottled.Add(1)
		}
		b.log.Warn("digest authentication throttled", "from", req.Source(), "user", aor.User, "by", by)
		return 503, "Service Unavailable: too many authentication failures", ""
	}
	if hasCreds {
		if !l.ua.authAllowed(key, now) {
			return throttled("source")
		}
		if !b.auth.isTrusted(account, key, now) && !b.auth.accounts.authAllowed(account, now) {
			return throttled("account")
		}
	}
	verdict, chal := b.cfg.users.check(req, aor, b.domain, b.cfg.digestAlgs, now)
	if hasCreds && verdict != digestChallenge {
		l.stats.authChecked.Add(1)
	}
	switch verdict {
	case digestOK:
		b.auth.succeeded(account, key, now)
		return 0, "", ""
	case digestChallenge:
		return 401, "Unauthorized", chal
	case digestStale:
		l.stats.authStale.Add(1)
		b.log.Info("digest nonce stale or already used", "from", req.Source(), "user", aor.User)
		return 401, "Unauthorized", chal
	case digestMalformed:
		return 400, "Bad Request: malformed Authorization", ""
	}
	l.stats.authFailed.Add(1)
	l.ua.authFailed(key, now)
	b.auth.accounts.authFailed(account, now)
	b.log.Info("digest authentication failed", "from", req.Source(), "user", aor.User)
	return 403, "Forbidden", ""
}
