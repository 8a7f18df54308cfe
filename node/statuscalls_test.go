package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/sipua"
)

// TestStatusListsCalls: /status, and its text, list a call in progress between two phones
// of a node, and no longer once it was cancelled.
func TestStatusListsCalls(t *testing.T) {
	ctx := context.Background()
	n, err := New(ctx, Config{Domain: "pastry", ListenAddrs: loopback,
		SIP:       &SIPConfig{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0"},
		Bootstrap: BootstrapConfig{DisableMDNS: true, DisableCache: true},
		Global:    BootstrapConfig{DisableMDNS: true, DisableCache: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	srv := httptest.NewServer(mustAdmin(t, n))
	defer srv.Close()
	status := func() (Status, error) {
		code, body := get(t, srv.URL+"/status")
		var s Status
		if code != http.StatusOK {
			return s, fmt.Errorf("/status: %d %s", code, body)
		}
		return s, json.Unmarshal(body, &s)
	}

	bob, err := sipua.NewUA("sip:bob@pastry", n.Bridge().UDPAddr(), sipua.WithUALogger(quiet),
		sipua.WithUAAnswer(sipua.AnswerRingOnly, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bob.Close() })
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if _, err := bob.Register(rctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	alice := uaAt(t, "sip:alice@pastry", "", n)

	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = alice.Call(callCtx, "sip:bob@pastry")
	}()
	var call StatusCall
	eventually(t, 10*time.Second, "/status lists the call", func() error {
		s, err := status()
		if err != nil {
			return err
		}
		if len(s.Calls) != 1 {
			return fmt.Errorf("calls %+v", s.Calls)
		}
		call = s.Calls[0]
		return nil
	})
	if call.From != "sip:alice@pastry" || call.To != "sip:bob@pastry" || call.State != "early" ||
		call.Direction != "local" || call.CallID == "" || call.Started.IsZero() ||
		!strings.HasPrefix(call.Upstream, "phone ") || len(call.Downstream) != 1 || !strings.HasPrefix(call.Downstream[0], "phone sip:bob@") {
		t.Errorf("/status call: %+v", call)
	}
	s, _ := status()
	var text strings.Builder
	if err := s.WriteText(&text); err != nil || !strings.Contains(text.String(), "call          "+call.CallID+" local sip:alice@pastry -> sip:bob@pastry, early") {
		t.Errorf("status text (%v):\n%s", err, text.String())
	}

	// sipgo cancels only after a provisional answer: wait for the 180.
	eventually(t, 10*time.Second, "180 at alice", func() error {
		for _, e := range alice.Ladder() {
			if strings.Contains(e.First, "180") {
				return nil
			}
		}
		return errors.New("no 180 yet")
	})
	cancel()
	<-done
	eventually(t, 10*time.Second, "/status without the cancelled call", func() error {
		s, err := status()
		if err == nil && len(s.Calls) != 0 {
			err = fmt.Errorf("calls %+v", s.Calls)
		}
		return err
	})
}
