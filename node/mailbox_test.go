package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipua"
)

// aliceOffline registers a device of sip:alice@pastry (password alicepw) at n, so that
// her node publishes her mailbox key, and unregisters it: messages for her wait from now.
func aliceOffline(t *testing.T, ctx context.Context, n *Node) *sipua.UA {
	t.Helper()
	first := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-0000000a1ce1>", n, sipua.AnswerAuto, 0)
	if _, err := first.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	return first
}

// kept sends alice text from ua until the MESSAGE is kept for her (202 Accepted).
func kept(t *testing.T, ctx context.Context, ua *sipua.UA, text string) {
	t.Helper()
	eventually(t, 30*time.Second, "the MESSAGE is kept", func() error {
		res, err := ua.Message(ctx, "sip:alice@pastry", text)
		if err != nil {
			return err
		}
		if res.StatusCode != 202 {
			return fmt.Errorf("%d %s", res.StatusCode, res.Reason)
		}
		return nil
	})
}

// TestMessagesWait: alice of pastry registers once (her node publishes her mailbox key)
// and goes offline; carol of ringo sends her two MESSAGEs: each gets 202 Accepted. When a
// device of alice registers again a minute later (as the scenario has it), at
// another node of her domain, both arrive, once, in the order they were sent; a device
// registering later gets nothing again.
func TestMessagesWait(t *testing.T) {
	users := usersLine(t, "alice", "pastry", "alicepw", true)
	ds := startSpecDomains(t,
		domainSpec{name: "pastry", n: 3, users: users},
		carolsRingo(t))
	p := ds["pastry"]
	carol := carolAt(t, ds)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := aliceOffline(t, ctx, p[1])
	texts := []string{"first, while you were away", "second, still away"}
	for _, text := range texts {
		kept(t, ctx, carol, text)
	}
	// alice stays offline for a minute: the scenario, not a wait for anything to settle.
	offline := time.NewTimer(time.Minute)
	select {
	case m := <-first.Messages():
		t.Fatalf("the unregistered device got %q", m.Body)
	case <-offline.C:
	}
	back := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-0000000a1ce2>", p[2], sipua.AnswerAuto, 0)
	var got []string
	for len(got) < len(texts) {
		select {
		case m := <-back.Messages():
			if !strings.Contains(m.From, "carol@ringo") {
				t.Errorf("message from %q", m.From)
			}
			got = append(got, string(m.Body))
		case <-ctx.Done():
			t.Fatalf("delivered %q, want %q", got, texts)
		}
	}
	for i := range texts {
		if got[i] != texts[i] {
			t.Fatalf("delivered %q, want %q in order", got, texts)
		}
	}
	// Acknowledged: a device registering later gets nothing.
	later := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-0000000a1ce3>", p[1], sipua.AnswerAuto, 0)
	waitFor := time.NewTimer(3 * time.Second) // a delivery takes one fetch; none must come
	defer waitFor.Stop()
	select {
	case m := <-later.Messages():
		t.Fatalf("delivered again: %q", m.Body)
	case m := <-back.Messages():
		t.Fatalf("delivered twice: %q", m.Body)
	case <-waitFor.C:
	}
}

// TestMessageSummary: the message-summary package (RFC 3842) is fed from the mailbox.
// Two messages wait for alice; her desk phone, which takes no MESSAGE (415), registers
// and subscribes at its node and is told that two text messages wait; when her laptop
// registers there and takes them, the desk phone is told that none wait any more.
// Another user's subscription to alice's message-summary is refused.
func TestMessageSummary(t *testing.T) {
	users := usersLine(t, "alice", "pastry", "alicepw", true) + usersLine(t, "dave", "pastry", "davepw", true)
	ds := startSpecDomains(t,
		domainSpec{name: "pastry", n: 3, users: users},
		carolsRingo(t))
	p := ds["pastry"]
	carol := carolAt(t, ds)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	aliceOffline(t, ctx, p[1])
	texts := []string{"one", "two"}
	for _, text := range texts {
		kept(t, ctx, carol, text)
	}

	desk := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-00000000de5c>", p[2], sipua.AnswerAuto, 0,
		sipua.WithUARefuseMessages())
	if res, err := desk.Subscribe(ctx, "sip:alice@pastry", "message-summary", time.Hour); err != nil || res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE message-summary: %v %v", res, err)
	}
	n := waitNotify(t, desk, "Text-Message: 2/0", 30*time.Second)
	if !strings.Contains(string(n.Body), "Messages-Waiting: yes") || n.ContentType != "application/simple-message-summary" {
		t.Fatalf("NOTIFY %s %q", n.ContentType, n.Body)
	}
	t.Logf("desk phone told: %q", n.Body)

	dave := device(t, "sip:dave@pastry", "davepw", "<urn:uuid:00000000-0000-0000-0000-00000000da5e>", p[2], sipua.AnswerAuto, 0)
	if res, err := dave.Subscribe(ctx, "sip:alice@pastry", "message-summary", time.Hour); err != nil || res.StatusCode != 403 {
		t.Errorf("dave's SUBSCRIBE to alice's message-summary: %v %v, want 403", res, err)
	}

	laptop := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-0000001a9709>", p[2], sipua.AnswerAuto, 0)
	for _, text := range texts {
		select {
		case m := <-laptop.Messages():
			if string(m.Body) != text {
				t.Fatalf("laptop got %q, want %q", m.Body, text)
			}
		case <-ctx.Done():
			t.Fatal("the laptop got no waiting message")
		}
	}
	n = waitNotify(t, desk, "Messages-Waiting: no", 30*time.Second)
	t.Logf("desk phone told: %q", n.Body)
}

// TestMessagesWaitBounds: one sender's messages for one user are bounded (the 31st gets
// 480 while 30 wait), and a message waits only as long as the storing node's retention
// (mailbox.retention): a device registering after it gets nothing.
func TestMessagesWaitBounds(t *testing.T) {
	const retention = 20 * time.Second
	users := usersLine(t, "alice", "pastry", "alicepw", true)
	ds := startSpecDomains(t,
		domainSpec{name: "pastry", n: 3, users: users, cfg: func(_ host.Host, c *Config) { c.Mailbox.Retention = retention }},
		carolsRingo(t))
	p := ds["pastry"]
	carol := carolAt(t, ds)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	aliceOffline(t, ctx, p[1])
	limit := domains.MaxSenderQueues * domains.MaxMailPerQueue
	var last time.Time
	accepted, refused := 0, 0
	for i := 0; i < limit+3 && refused == 0; i++ {
		eventually(t, 30*time.Second, "the MESSAGE is answered", func() error {
			res, err := carol.Message(ctx, "sip:alice@pastry", fmt.Sprintf("flood %d", i))
			switch {
			case err != nil:
				return err
			case res.StatusCode == 202:
				accepted++
				last = time.Now()
			case res.StatusCode == 480 && accepted > 0:
				refused++
			default:
				return fmt.Errorf("%d %s", res.StatusCode, res.Reason)
			}
			return nil
		})
	}
	t.Logf("one sender: %d accepted, then %d refused; bound %d", accepted, refused, limit)
	if accepted != limit || refused == 0 {
		t.Fatalf("accepted %d, refused %d: want %d accepted then 480", accepted, refused, limit)
	}
	// Past the retention of the last message: a device that registers gets nothing.
	wait := time.NewTimer(time.Until(last.Add(retention + time.Second)))
	<-wait.C
	back := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-0000000a1ce2>", p[2], sipua.AnswerAuto, 0)
	quiet := time.NewTimer(5 * time.Second) // a delivery takes one fetch; none must come
	defer quiet.Stop()
	select {
	case m := <-back.Messages():
		t.Fatalf("delivered after its retention: %q", m.Body)
	case <-quiet.C:
	}
}

// TestMessagesWaitFlood: twenty senders of another domain each leave alice a message
// while she is offline. Her mailbox takes one queue per sender up to its bound
// (domains.MailSlots queues); the senders beyond it get 480, and when alice registers
// she gets every message that was accepted, each once: the bound holds, nothing that
// was accepted is lost.
func TestMessagesWaitFlood(t *testing.T) {
	const senders = domains.MailSlots + 4
	ds := startSpecDomains(t,
		domainSpec{name: "pastry", n: 3, users: usersLine(t, "alice", "pastry", "alicepw", true)},
		domainSpec{name: "ringo", n: 2}) // no users file: its loopback UAs may take any name
	p := ds["pastry"]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	aliceOffline(t, ctx, p[1])
	accepted := map[string]bool{}
	refused := 0
	for i := range senders {
		aor := fmt.Sprintf("sip:spammer%d@ringo", i)
		ua, err := sipua.NewUA(aor, member(ds["ringo"]).Bridge().UDPAddr(), sipua.WithUALogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ua.Close() })
		text := fmt.Sprintf("from spammer %d", i)
		eventually(t, 30*time.Second, "the MESSAGE of "+aor+" is answered", func() error {
			res, err := ua.Message(ctx, "sip:alice@pastry", text)
			switch {
			case err != nil:
				return err
			case res.StatusCode == 202:
				accepted[text] = true
			case res.StatusCode == 480 && len(accepted) > 0:
				refused++
			default:
				return fmt.Errorf("%d %s", res.StatusCode, res.Reason)
			}
			return nil
		})
	}
	t.Logf("%d senders: %d messages accepted, %d refused (bound: %d queues of %d)", senders, len(accepted), refused,
		domains.MailSlots, domains.MaxMailPerQueue)
	if len(accepted) > domains.MailSlots || refused == 0 {
		t.Fatalf("%d accepted, %d refused: the per-user bound of %d senders did not hold", len(accepted), refused, domains.MailSlots)
	}
	back := device(t, "sip:alice@pastry", "alicepw", "<urn:uuid:00000000-0000-0000-0000-0000000a1ce2>", p[2], sipua.AnswerAuto, 0)
	got := map[string]int{}
	for n := 0; n < len(accepted); n++ {
		select {
		case m := <-back.Messages():
			got[string(m.Body)]++
		case <-ctx.Done():
			t.Fatalf("alice got %d of the %d accepted messages", len(got), len(accepted))
		}
	}
	for text := range accepted {
		if got[text] != 1 {
			t.Errorf("%q delivered %d times", text, got[text])
		}
	}
}
