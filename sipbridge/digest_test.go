package sipbridge

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// regClient sends REGISTERs by hand from one UDP source.
type regClient struct {
	t   *testing.T
	pc  net.PacketConn
	dst *net.UDPAddr
	seq int
}

func newRegClient(t *testing.T, src string, n *testNode) *regClient {
	t.Helper()
	pc, err := net.ListenPacket("udp", src+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	dst, _ := net.ResolveUDPAddr("udp", n.b.UDPAddr())
	return &regClient{t: t, pc: pc, dst: dst}
}

// register sends a REGISTER for user with contact and the Authorization auth ("" none) and
// returns the final answer.
func (c *regClient) register(user, contact, auth string) *sip.Response {
	c.t.Helper()
	c.seq++
	if auth != "" {
		auth = "Authorization: " + auth + "\r\n"
	}
	req := fmt.Sprintf("REGISTER sip:pastry SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKreg%d%s\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@pastry>;tag=r%d\r\nTo: <sip:%s@pastry>\r\nCall-ID: reg-%s-%d\r\nCSeq: %d REGISTER\r\n"+
		"Contact: <%s>\r\nExpires: 600\r\n%sContent-Length: 0\r\n\r\n",
		c.pc.LocalAddr(), c.seq, strings.ReplaceAll(c.pc.LocalAddr().String(), ":", "x"), user, c.seq, user,
		c.pc.LocalAddr(), c.seq, c.seq, contact, auth)
	if _, err := c.pc.WriteTo([]byte(req), c.dst); err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, 65535)
	for {
		_ = c.pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err := c.pc.ReadFrom(buf)
		if err != nil {
			c.t.Fatalf("REGISTER %s: no answer: %v", user, err)
		}
		m, err := sip.ParseMessage(buf[:k])
		if err != nil {
			c.t.Fatal(err)
		}
		if res := m.(*sip.Response); res.StatusCode >= 200 {
			return res
		}
	}
}

// challenge returns the challenges of a 401, in order.
func challengesOf(t *testing.T, res *sip.Response) []*digest.Challenge {
	t.Helper()
	var out []*digest.Challenge
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if res.StatusCode != 401 || len(out) == 0 {
		t.Fatalf("want a 401 with challenges, got %d %s", res.StatusCode, res.Reason)
	}
	return out
}

// credentials answers chal for user/password with nonce count nc.
func credentials(t *testing.T, chal *digest.Challenge, user, password string, nc int) string {
	t.Helper()
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:pastry", Username: user, Password: password, Count: nc})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

// TestDigestReplayRefused: a captured Authorization replayed from another address with a
// new Call-ID is refused (401 stale) and adds nothing to the binding; the UA that owns it
// goes on with a higher nonce count; SHA-256 and MD5 both work; users-file lines carry
// both HA1s.
func TestDigestReplayRefused(t *testing.T) {
	users, err := ReadUsers(strings.NewReader(UsersLine("alice", "pastry", "alice-secret") + "\n" +
		UsersLine("bob", "pastry", "bob-secret") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	// By default a node challenges with MD5 alone, as Kamailio does (many phones refuse
	// a challenge that names SHA-256), even when the users have both HA1s.
	def := newTestNode(t, newMemDir(), "pastry", WithUsers(users))
	if chals := challengesOf(t, newRegClient(t, "127.0.0.1", def).register("alice", "sip:alice@127.0.0.1:7000", "")); len(chals) != 1 || chals[0].Algorithm != "MD5" {
		t.Fatalf("default challenges %v, want MD5 alone", chals)
	}
	n := newTestNode(t, newMemDir(), "pastry", WithUsers(users), WithDigestAlgorithms("SHA-256", "MD5"))
	alice := newRegClient(t, "127.0.0.1", n)
	chals := challengesOf(t, alice.register("alice", "sip:alice@127.0.0.1:7000", ""))
	if len(chals) != 2 || chals[0].Algorithm != "SHA-256" || chals[1].Algorithm != "MD5" {
		t.Fatalf("challenges %v, want SHA-256 then MD5", chals)
	}
	for i := range chals {
		// a fresh nonce for each algorithm: one nonce serves both challenges
		chal := challengesOf(t, alice.register("alice", "sip:alice@127.0.0.1:7000", ""))[i]
		auth := credentials(t, chal, "alice", "alice-secret", 1)
		if res := alice.register("alice", "sip:alice@127.0.0.1:7000", auth); res.StatusCode != 200 {
			t.Fatalf("%s: %d %s, want 200", chal.Algorithm, res.StatusCode, res.Reason)
		}
		// the attacker replays it from elsewhere, with its own contact and a new Call-ID
		mallory := newRegClient(t, "127.0.0.9", n)
		res := mallory.register("alice", "sip:mallory@127.0.0.9:6666", auth)
		if res.StatusCode == 200 {
			t.Fatalf("%s: a replayed Authorization was accepted", chal.Algorithm)
		}
		if res.StatusCode != 401 || !strings.Contains(res.GetHeader("WWW-Authenticate").Value(), "stale=true") {
			t.Errorf("%s: replay answered %d %s, want 401 stale", chal.Algorithm, res.StatusCode, res.Reason)
		}
		// the owner goes on with the same nonce and the next count
		if res := alice.register("alice", "sip:alice@127.0.0.1:7000", credentials(t, chal, "alice", "alice-secret", 2)); res.StatusCode != 200 {
			t.Fatalf("%s, nc=2: %d %s", chal.Algorithm, res.StatusCode, res.Reason)
		}
	}
	if b := n.loc.binding("sip:alice@pastry"); b == nil || len(b.Contacts) != 1 || strings.Contains(b.Contacts[0].URI, "mallory") {
		t.Fatalf("alice's binding %+v", b)
	}
	if st := n.b.Stats(); st.AuthStale < 2 {
		t.Errorf("AuthStale %d, want 2", st.AuthStale)
	}
}

// TestDigestGuessThrottledPerAccount: six sources guessing nine passwords each for alice
// are throttled per account, not per source only: the right password, tried last, is never
// checked; alice's own phone, which registered before, still gets in; the failures and the
// throttling are logged, and bounded.
func TestDigestGuessThrottledPerAccount(t *testing.T) {
	users := NewUsers()
	users.Add("alice", "pastry", "alice-secret")
	w := &countingWriter{}
	n := newTestNode(t, newMemDir(), "pastry", WithUsers(users), WithLogger(slog.New(slog.NewTextHandler(w, nil))))
	phone := newRegClient(t, "127.0.0.1", n)
	chal := challengesOf(t, phone.register("alice", "sip:alice@127.0.0.1:7000", ""))[0]
	if res := phone.register("alice", "sip:alice@127.0.0.1:7000", credentials(t, chal, "alice", "alice-secret", 1)); res.StatusCode != 200 {
		t.Fatalf("alice's phone: %d %s", res.StatusCode, res.Reason)
	}
	mark := w.mark()
	found := false
	var answers []int
	for s := 0; s < 6; s++ {
		c := newRegClient(t, fmt.Sprintf("127.0.0.%d", 20+s), n)
		for g := 0; g < 9; g++ {
			pw := fmt.Sprintf("guess-%d-%d", s, g)
			if s == 5 && g == 8 {
				pw = "alice-secret"
			}
			res := c.register("alice", "sip:x@127.0.0.1:9", "")
			if res.StatusCode != 401 {
				t.Fatalf("no challenge: %d", res.StatusCode)
			}
			res = c.register("alice", "sip:x@127.0.0.1:9", credentials(t, challengesOf(t, res)[0], "alice", pw, 1))
			answers = append(answers, res.StatusCode)
			if res.StatusCode == 200 {
				found = true
			}
		}
	}
	st := n.b.Stats()
	t.Logf("54 guesses from 6 sources: answers %v; checked %d, failed %d, throttled %d (per account %d); %d log bytes",
		answers, st.AuthChecked, st.AuthFailed, st.AuthThrottled, st.AuthAccountThrottled, w.n.Load()-mark)
	if found {
		t.Fatal("the guessers found alice's password")
	}
	if lim := DefaultLimits(); st.AuthFailed > uint64(lim.AuthFailures)+1 {
		t.Errorf("%d wrong passwords checked, account budget %d", st.AuthFailed, lim.AuthFailures)
	}
	if st.AuthAccountThrottled == 0 {
		t.Error("never throttled per account")
	}
	// alice's phone, known to the account, is not locked out
	chal = challengesOf(t, phone.register("alice", "sip:alice@127.0.0.1:7000", ""))[0]
	if res := phone.register("alice", "sip:alice@127.0.0.1:7000", credentials(t, chal, "alice", "alice-secret", 1)); res.StatusCode != 200 {
		t.Fatalf("alice's phone during the attack: %d %s", res.StatusCode, res.Reason)
	}
	logs := w.String()
	for _, want := range []string{"digest authentication failed", "digest authentication throttled"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the log", want)
		}
	}
	if b := w.n.Load() - mark; b > 16<<10 {
		t.Errorf("the guessing wrote %d log bytes", b)
	}
}

// TestUsersFile: users-file lines hold an MD5 HA1, a SHA-256 HA1 or both; by default the
// node challenges with one algorithm every user has, MD5 first (both when none is common
// to all); asked for both, with those every user has; a bad HA1 is an error naming its line.
func TestUsersFile(t *testing.T) {
	md5Only := "carol:pastry:" + HA1("carol", "pastry", "c") + "\n"
	both := UsersLine("dave", "pastry", "d") + "\n"
	shaOnly := "erin:pastry:" + HA1SHA256("erin", "pastry", "e") + "\n"
	for _, c := range []struct {
		file string
		want string
	}{
		{md5Only, "MD5"}, {both, "MD5"}, {md5Only + both, "MD5"}, {shaOnly + both, "SHA-256"},
		{md5Only + shaOnly, "SHA-256 MD5"},
	} {
		u, err := ReadUsers(strings.NewReader(c.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(u.algorithms(nil), " "); got != c.want {
			t.Errorf("%q: challenges %s, want %s", c.file, got, c.want)
		}
	}
	for _, c := range []struct {
		file string
		want string
	}{{both, "SHA-256 MD5"}, {md5Only + both, "MD5"}, {shaOnly + both, "SHA-256"}, {md5Only + shaOnly, "SHA-256 MD5"}} {
		u, _ := ReadUsers(strings.NewReader(c.file))
		if got := strings.Join(u.algorithms([]string{algSHA256, algMD5}), " "); got != c.want {
			t.Errorf("%q with SHA-256, MD5: challenges %s, want %s", c.file, got, c.want)
		}
	}
	if _, err := ReadUsers(strings.NewReader("# x\n" + both + "frank:pastry:abc\n")); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("bad HA1: %v, want an error naming line 3", err)
	}
	if got := UsersLine("dave", "pastry", "d"); !strings.HasPrefix(got, "dave:pastry:"+HA1("dave", "pastry", "d")+",") || len(got) != len("dave:pastry:")+32+1+64 {
		t.Errorf("UsersLine = %q", got)
	}
}
