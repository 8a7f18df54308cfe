package sipsdp

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestHas(t *testing.T) {
	body := []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
	for _, c := range []struct {
		ct   string
		body []byte
		want bool
	}{
		{"application/sdp", body, true},
		{"Application/SDP; charset=utf-8", body, true},
		{"text/plain", body, false},
		{"application/sdp", nil, false},
		{"", body, false},
	} {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "pastry"})
		if c.ct != "" {
			req.AppendHeader(sip.NewHeader("Content-Type", c.ct))
		}
		req.SetBody(c.body)
		if got := Has(req); got != c.want {
			t.Errorf("Content-Type %q, %d bytes: Has = %v, want %v", c.ct, len(c.body), got, c.want)
		}
	}
	if sd, err := Parse(body); err != nil || len(sd.MediaDescriptions) != 1 {
		t.Errorf("Parse: %v", err)
	}
	if _, err := Parse([]byte("not sdp")); err == nil {
		t.Error("Parse of garbage: no error")
	}
}
