package sipbridge

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/push"
	"github.com/hiersip/hiersip/sipua"
)

// restartBridge closes n's bridge and starts another on the same host and locator, as a
// restarted node with the same identity and data directory.
func restartBridge(t *testing.T, n *testNode, opts ...Option) {
	t.Helper()
	if err := n.b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := New(n.h, n.loc, append([]Option{WithListen("127.0.0.1:0"), WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	n.b = b
	t.Cleanup(func() { _ = b.Close() })
}

// TestRegistrationsSurviveRestart: the registrar's contacts (with the source of a phone
// behind NAT) are in the store file shortly after they change, before any Close — what a
// crash leaves behind — and a node restarted from that file serves them at once: calls reach
// the phones without them registering again.
func TestRegistrationsSurviveRestart(t *testing.T) {
	store := filepath.Join(t.TempDir(), "registrations.json")
	n1, n2 := twoNodes(t)
	restartBridge(t, n1, WithRegistrationStore(store))
	ctx := ctxT(t, 30*time.Second)
	bob := newTestUA(t, "sip:bob@pastry", n1, sipua.WithUAAnswer(sipua.AnswerAuto, 0))
	if _, err := bob.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	phone := newRawPhone(t, "udp", n1.b.UDPAddr())
	phone.register("dave", "pastry", natPrivate, 1)
	eventually(t, 5*time.Second, "the store to list both contacts", func() bool {
		f, err := readStore(store)
		return err == nil && len(f.Contacts) == 2
	})
	crashed, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	var f storedFile
	if err := json.Unmarshal(crashed, &f); err != nil {
		t.Fatal(err)
	}
	for _, c := range f.Contacts {
		if c.AOR == "sip:dave@pastry" && (!c.NAT || c.Source != phone.addr() || c.Transport != "udp" || c.CallID != "reg-dave" || c.CSeq != 1) {
			t.Fatalf("stored NAT contact: %+v", c)
		}
	}
	// Restart from the file as the crash left it (Close saves too: put the old one back), on
	// the same ports.
	udp, tcp := n1.b.UDPAddr(), n1.b.TCPAddr()
	if err := n1.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store, crashed, 0o600); err != nil {
		t.Fatal(err)
	}
	n1.loc.dir.mu.Lock()
	clear(n1.loc.dir.m) // the overlay forgot too: the restarted node must publish again
	n1.loc.dir.mu.Unlock()
	b, err := New(n1.h, n1.loc, WithUDP(udp), WithTCP(tcp), WithLogger(testLogger(t)), WithRegistrationStore(store))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	n1.b = b
	eventually(t, 5*time.Second, "the restored bindings to be published", func() bool {
		return n1.loc.binding("sip:bob@pastry") != nil && n1.loc.binding("sip:dave@pastry") != nil
	})

	alice := newTestUA(t, "sip:alice@pastry", n2)
	call, err := alice.Call(ctx, "sip:bob@pastry")
	if err != nil {
		t.Fatalf("calling bob after the restart: %v", err)
	}
	_ = call.Hangup(ctx)
	registers := 0
	for _, e := range bob.Ladder() {
		if e.Sent && strings.HasPrefix(e.First, "REGISTER") {
			registers++
		}
	}
	if registers != 1 {
		t.Fatalf("bob sent %d REGISTERs", registers)
	}
	done := make(chan error, 1)
	go func() {
		c, err := alice.Call(ctx, "sip:dave@pastry")
		if err == nil {
			err = c.Hangup(ctx)
		}
		done <- err
	}()
	inv := phone.expect("INVITE at the phone's NAT address after the restart", 10*time.Second, isRequest(sip.INVITE)).(*sip.Request)
	phone.answer(inv, "dave", natPrivate)
	phone.expect("ACK", 10*time.Second, isRequest(sip.ACK))
	phone.ok(phone.expect("BYE", 10*time.Second, isRequest(sip.BYE)).(*sip.Request))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRegistrationStoreLoad: on start only live, valid contacts of the node's domain are
// restored, an expiry beyond the maximum is cut down; a corrupt file is set aside with a
// warning and the node starts empty, then writes a good file.
func TestRegistrationStoreLoad(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "registrations.json")
	now := time.Now()
	f := storedFile{Version: storeVersion, Domain: "pastry", Contacts: []storedContact{
		{AOR: "sip:live@pastry", URI: "sip:live@192.0.2.20:5062", Expires: now.Add(time.Minute), CallID: "c", CSeq: 3},
		{AOR: "sip:far@pastry", URI: "sip:far@192.0.2.21:5062", Expires: now.Add(100 * 24 * time.Hour), CallID: "c", CSeq: 1},
		{AOR: "sip:old@pastry", URI: "sip:old@192.0.2.22:5062", Expires: now.Add(-time.Second)},
		{AOR: "sip:x@can", URI: "sip:x@192.0.2.23:5062", Expires: now.Add(time.Minute)},
		{AOR: "sip:bad@pastry", URI: "::not a uri", Expires: now.Add(time.Minute)},
		{AOR: "sip:src@pastry", URI: "sip:src@192.0.2.24:5062", Expires: now.Add(time.Minute), Source: "nowhere", NAT: true},
	}}
	data, _ := json.Marshal(f)
	if err := os.WriteFile(store, data, 0o600); err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, newMemDir(), "pastry", WithRegistrationStore(store))
	eventually(t, 5*time.Second, "restored bindings published", func() bool {
		return n.loc.binding("sip:live@pastry") != nil && n.loc.binding("sip:far@pastry") != nil
	})
	for _, aor := range []string{"sip:old@pastry", "sip:x@can", "sip:bad@pastry", "sip:src@pastry"} {
		if n.loc.binding(aor) != nil {
			t.Errorf("%s was restored", aor)
		}
	}
	n.b.reg.mu.Lock()
	far := n.b.reg.aors["sip:far@pastry"].contacts[0].expires
	n.b.reg.mu.Unlock()
	if far.After(time.Now().Add(DefaultMaxExpires)) {
		t.Errorf("an expiry of 100 days was kept: %v", far)
	}

	// A corrupt file.
	if err := n.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store, []byte(`{"version":1,"contacts":[{`), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	b, err := New(n.h, n.loc, WithListen("127.0.0.1:0"), WithRegistrationStore(store), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	n.b = b
	if _, err := os.Stat(store + ".corrupt"); err != nil {
		t.Fatalf("corrupt file not set aside: %v", err)
	}
	if !strings.Contains(logs.String(), "registration store unreadable") {
		t.Fatalf("no warning: %s", logs.String())
	}
	ua := newTestUA(t, "sip:new@pastry", n)
	if _, err := ua.Register(ctxT(t, 10*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a good file", func() bool {
		f, err := readStore(store)
		return err == nil && len(f.Contacts) == 1 && f.Contacts[0].AOR == "sip:new@pastry"
	})
	if fi, err := os.Stat(store); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store file mode: %v %v", fi, err)
	}
}

// TestRegistrationStoreGap: a large file is written less often, at most 1 MiB/s.
func TestRegistrationStoreGap(t *testing.T) {
	s := newRegStore(filepath.Join(t.TempDir(), "r.json"))
	if s.gap() != storeMinGap {
		t.Fatalf("empty store: gap %v", s.gap())
	}
	s.size.Store(5 << 20)
	if s.gap() != 5*time.Second {
		t.Fatalf("5 MiB store: gap %v", s.gap())
	}
}

// TestRegistrationStoreKeepsDevices: a restarted node keeps a device's +sip.instance, the
// time it first registered and its RFC 8599 push parameters (so that it still wakes it);
// stored push parameters that are not valid are dropped, the contact kept.
func TestRegistrationStoreKeepsDevices(t *testing.T) {
	store := filepath.Join(t.TempDir(), "registrations.json")
	now := time.Now()
	since := now.Add(-time.Hour).UTC().Truncate(time.Second)
	f := storedFile{Version: storeVersion, Domain: "pastry", Contacts: []storedContact{
		{AOR: "sip:alice@pastry", URI: "sip:alice@192.0.2.30:5062", Expires: now.Add(time.Minute), CallID: "c", CSeq: 1,
			Instance: "<urn:uuid:00000000-0000-0000-0000-00000000f00e>", Since: since,
			Push: &push.Params{Provider: "fcm", PRID: "token"}},
		{AOR: "sip:bob@pastry", URI: "sip:bob@192.0.2.31:5062", Expires: now.Add(time.Minute), CallID: "c", CSeq: 1,
			Instance: "not an instance", Push: &push.Params{Provider: "fcm"}},
	}}
	data, _ := json.Marshal(f)
	if err := os.WriteFile(store, data, 0o600); err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, newMemDir(), "pastry", WithRegistrationStore(store))
	n.b.reg.mu.Lock()
	defer n.b.reg.mu.Unlock()
	a, b := n.b.reg.aors["sip:alice@pastry"], n.b.reg.aors["sip:bob@pastry"]
	if a == nil || b == nil {
		t.Fatal("contacts not restored")
	}
	ca, cb := a.contacts[0], b.contacts[0]
	if ca.instance != "<urn:uuid:00000000-0000-0000-0000-00000000f00e>" || !ca.since.Equal(since) || ca.push == nil || ca.push.PRID != "token" {
		t.Errorf("alice's device: instance %q since %v push %+v", ca.instance, ca.since, ca.push)
	}
	if cb.instance != "" || cb.push != nil {
		t.Errorf("bob's invalid instance or push parameters kept: %q %+v", cb.instance, cb.push)
	}
}
