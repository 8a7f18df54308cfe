package sipbridge

import (
	"bytes"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestSerializeAsSipgo: the bridge writes messages byte for byte as sipgo's String does.
func TestSerializeAsSipgo(t *testing.T) {
	for _, raw := range []string{
		string(benchInvite("z9hG4bK-1", "ser@test", 5070)),
		"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK2;rport=5062;received=2001:db8::1\r\n" +
			"Via: SIP/2.0/P2P 12D3KooWx;branch=z9hG4bKhs0123456789abcdef.x\r\n" +
			"Record-Route: <sip:127.0.0.1:5060;transport=udp;lr;hsn=12D3KooWx>\r\nRecord-Route: <sip:[::1]:5060;lr>\r\n" +
			"From: \"Alice A\" <sip:alice@pastry>;tag=1\r\nTo: <sip:bob@pastry;user=phone>;tag=2\r\n" +
			"Call-ID: c@h\r\nCSeq: 7 INVITE\r\nContact: <sip:bob@127.0.0.1:5999;transport=tcp>;expires=60;+sip.instance=\"<urn:uuid:1 2>\"\r\n" +
			"Content-Length: 0\r\n\r\n",
		"REGISTER sip:pastry SIP/2.0\r\nVia: SIP/2.0/TCP h.example:5060;branch=z9hG4bK3\r\nMax-Forwards: 70\r\n" +
			"From: <sip:a@pastry>;tag=x\r\nTo: <sip:a@pastry>\r\nCall-ID: r\r\nCSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\n" +
			"Route: <sip:p.example;lr>\r\nContent-Length: 0\r\n\r\n",
		"MESSAGE tel:+1-555-0100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK4\r\nFrom: <tel:+1-555-0101>;tag=t\r\n" +
			"To: <sip:u:pw@h.example?subject=x&priority=urgent>\r\nCall-ID: m\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n" +
			"Content-Length: 2\r\n\r\nhi",
	} {
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		var w bytes.Buffer
		encodeTo(&w, m)
		if got, want := w.String(), m.String(); got != want {
			t.Errorf("written:\n%s\nsipgo:\n%s", got, want)
		}
	}
}
