package presence

import (
	"errors"
	"strings"
	"testing"
)

// rfc3680 is the example NOTIFY body of RFC 3680 §6.
const rfc3680 = `<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    version="0" state="full">
  <registration aor="sip:user@example.com" id="as9" state="active">
    <contact id="76" state="active" event="registered" duration-registered="7322" q="0.8">
      <uri>sip:user@pc887.example.com</uri>
    </contact>
    <contact id="77" state="terminated" event="expired" duration-registered="3600" q="0.5">
      <uri>sip:user@university.edu</uri>
    </contact>
  </registration>
</reginfo>`

func checkRFC3680(t *testing.T, ri *RegInfo) {
	t.Helper()
	if ri.Version != 0 || ri.State != "full" || len(ri.Registrations) != 1 {
		t.Fatalf("reginfo: %+v", ri)
	}
	r := ri.Registrations[0]
	if r.AOR != "sip:user@example.com" || r.ID != "as9" || r.State != "active" || len(r.Contacts) != 2 {
		t.Fatalf("registration: %+v", r)
	}
	c0, c1 := r.Contacts[0], r.Contacts[1]
	if c0.ID != "76" || c0.Event != "registered" || *c0.Duration != 7322 || c0.Q != "0.8" || c0.URI != "sip:user@pc887.example.com" {
		t.Errorf("contact 76: %+v", c0)
	}
	if c1.State != "terminated" || c1.Event != "expired" || *c1.Duration != 3600 || c1.URI != "sip:user@university.edu" {
		t.Errorf("contact 77: %+v", c1)
	}
}

func TestRegInfoRFC3680(t *testing.T) {
	ri, err := ParseRegInfo([]byte(rfc3680))
	if err != nil {
		t.Fatal(err)
	}
	checkRFC3680(t, ri)
	ri.Registrations[0].Contacts[0].Params = []Param{{Name: "+sip.instance", Value: `"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"`}}
	ri.Registrations[0].Contacts[0].PubGRUU = "sip:user@example.com;gr=urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF"
	out, err := ri.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseRegInfo(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	checkRFC3680(t, again)
	c := again.Registrations[0].Contacts[0]
	if len(c.Params) != 1 || c.Params[0].Name != "+sip.instance" || !strings.HasPrefix(c.PubGRUU, "sip:user@example.com;gr=") {
		t.Errorf("instance and GRUU: %+v\n%s", c, out)
	}
}

func TestRegInfoRefused(t *testing.T) {
	for name, doc := range map[string]string{
		"no version":    `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" state="full"/>`,
		"bad state":     `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="some"/>`,
		"bad reg state": `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full"><registration aor="sip:a@b" id="1" state="gone"/></reginfo>`,
		"bad event": `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full"><registration aor="sip:a@b" id="1" state="active">` +
			`<contact id="1" state="active" event="hijacked"><uri>sip:x@y</uri></contact></registration></reginfo>`,
		"no uri": `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full"><registration aor="sip:a@b" id="1" state="active">` +
			`<contact id="1" state="active" event="registered"/></registration></reginfo>`,
		"bad number": `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full"><registration aor="sip:a@b" id="1" state="active">` +
			`<contact id="1" state="active" event="registered" expires="-3"><uri>sip:x@y</uri></contact></registration></reginfo>`,
	} {
		if _, err := ParseRegInfo([]byte(doc)); !errors.Is(err, ErrBadDocument) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestSummaryRFC3842: the sample notification of RFC 3842 (§5.2, message A3
// of the call flow), and one with urgent counts and message headers.
func TestSummaryRFC3842(t *testing.T) {
	body := "Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 2/8 (0/2)\r\n"
	s, err := ParseSummary([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := ClassCount{Class: VoiceMessage, New: 2, Old: 8, Urgent: true, NewUrgent: 0, OldUrgent: 2}
	if !s.Waiting || s.Account != "sip:alice@vmail.example.com" || len(s.Counts) != 1 || s.Counts[0] != want {
		t.Fatalf("%+v", s)
	}
	if got := string(s.Marshal()); got != body {
		t.Errorf("marshal: %q, want %q", got, body)
	}
	s, err = ParseSummary([]byte("messages-waiting: NO\nText-Message: 3/1\nX-Ext: 7\n\nTo: <sip:alice@pastry>\nSubject: hi\n"))
	if err != nil || s.Waiting || len(s.Counts) != 1 || s.Counts[0].Class != TextMessage || s.Counts[0].New != 3 || s.Counts[0].Urgent {
		t.Fatalf("%+v %v", s, err)
	}
	for _, bad := range []string{"", "Voice-Message: 1/2\r\n", "Messages-Waiting: maybe\r\n",
		"Messages-Waiting: yes\r\nVoice-Message: 1\r\n", "Messages-Waiting: yes\r\nVoice-Message: 1/2 (3)\r\n",
		"Messages-Waiting: yes\r\nVoice-Message: a/b\r\n", strings.Repeat("x", maxSummary+1)} {
		if _, err := ParseSummary([]byte(bad)); !errors.Is(err, ErrBadDocument) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
