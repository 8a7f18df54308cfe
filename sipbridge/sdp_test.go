package sipbridge

import (
	"net/netip"
	"strings"
	"testing"
)

// A softphone's offer with ICE, SRTP (SDES), rtcp-mux, an explicit RTCP port, a rejected
// stream and a stream on hold.
const phoneOffer = "v=0\r\n" +
	"o=alice 123 456 IN IP4 192.168.1.20\r\n" +
	"s=call\r\n" +
	"c=IN IP4 192.168.1.20\r\n" +
	"t=0 0\r\n" +
	"a=ice-ufrag:abcd\r\n" +
	"a=ice-pwd:0123456789abcdef01234567\r\n" +
	"a=x-hiersip-anchor:12D3KooWSomebodyElse\r\n" +
	"m=audio 40000 RTP/SAVP 0 8 101\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtcp:40001 IN IP4 192.168.1.20\r\n" +
	"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n" +
	"a=candidate:1 1 UDP 2130706431 192.168.1.20 40000 typ host\r\n" +
	"a=end-of-candidates\r\n" +
	"a=sendrecv\r\n" +
	"m=video 0 RTP/AVP 96\r\n" +
	"a=rtpmap:96 VP8/90000\r\n" +
	"m=audio 40010 RTP/AVP 0\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtcp:40010\r\n" +
	"a=inactive\r\n"

func TestSDPStreams(t *testing.T) {
	sd, err := parseSDP([]byte(phoneOffer))
	if err != nil {
		t.Fatal(err)
	}
	st := streamsOf(sd)
	if len(st) != 3 {
		t.Fatalf("%d streams", len(st))
	}
	want := netip.MustParseAddrPort("192.168.1.20:40000")
	if st[0].rtp != want || st[0].rtcp != netip.MustParseAddrPort("192.168.1.20:40001") || st[0].hold {
		t.Fatalf("stream 0: %+v", st[0])
	}
	if st[1].port != 0 {
		t.Fatalf("rejected stream: %+v", st[1])
	}
	if !st[2].hold || st[2].rtp.IsValid() {
		t.Fatalf("held stream: %+v", st[2])
	}
}

func TestSDPRewriteForPhone(t *testing.T) {
	sd, err := parseSDP([]byte(phoneOffer))
	if err != nil {
		t.Fatal(err)
	}
	rewriteForPhone(sd, netip.MustParseAddr("10.0.0.1"), [][2]int{{20000, 20001}, {0, 0}, {20002, 20003}})
	b, err := sd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, want := range []string{
		"o=alice 123 456 IN IP4 10.0.0.1\r\n",
		"c=IN IP4 10.0.0.1\r\n",
		"m=audio 20000 RTP/SAVP 0 8 101\r\n",
		"a=rtcp:20001 IN IP4 10.0.0.1\r\n",
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
		"m=video 0 RTP/AVP 96\r\n",
		"m=audio 20002 RTP/AVP 0\r\n",
		"c=IN IP4 0.0.0.0\r\n", // hold stays hold
		"a=rtcp-mux\r\n",
		"a=rtcp:20002\r\n", // RTCP multiplexed on the RTP port stays so
		"a=inactive\r\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	for _, gone := range []string{"ice-", "candidate", "192.168.1.20", anchorAttr} {
		if strings.Contains(out, gone) {
			t.Errorf("%q left in\n%s", gone, out)
		}
	}
	sd6, _ := parseSDP([]byte(phoneOffer))
	rewriteForPhone(sd6, netip.MustParseAddr("2001:db8::1"), [][2]int{{20000, 20001}})
	b, _ = sd6.Marshal()
	if !strings.Contains(string(b), "c=IN IP6 2001:db8::1\r\n") {
		t.Errorf("IPv6:\n%s", b)
	}
}

func TestSDPAnchorAttribute(t *testing.T) {
	sd, err := parseSDP([]byte(phoneOffer))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := anchorOf(sd); ok {
		t.Fatal("an invalid peer ID was taken as anchor")
	}
	id := "12D3KooWLfMsxfNPMaEFpHjDMiRo2FUmxEfC7GNCVyz9p9ksvYLP"
	setAnchor(sd, id)
	b, _ := sd.Marshal()
	if strings.Count(string(b), anchorAttr) != 1 {
		t.Fatalf("anchor attributes:\n%s", b)
	}
	sd2, _ := parseSDP(b)
	if p, _, ok := anchorOf(sd2); !ok || p.String() != id {
		t.Fatalf("anchor %v %v", p, ok)
	}
}

func FuzzSDPRewrite(f *testing.F) {
	f.Add([]byte(phoneOffer))
	f.Fuzz(func(t *testing.T, body []byte) {
		sd, err := parseSDP(body)
		if err != nil {
			return
		}
		st := streamsOf(sd)
		ports := make([][2]int, len(st))
		for i := range ports {
			ports[i] = [2]int{20000 + 2*i, 20001 + 2*i}
		}
		rewriteForPhone(sd, netip.MustParseAddr("10.0.0.1"), ports)
		setAnchor(sd, "x")
		_, _ = sd.Marshal()
	})
}

// TestIsWebRTC: a browser's offer is WebRTC (left un-anchored), a softphone's is not.
func TestIsWebRTC(t *testing.T) {
	browser := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=fingerprint:sha-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:x\r\na=ice-pwd:yyyyyyyyyyyyyyyyyyyyyy\r\na=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n"
	phone := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	if !isWebRTC([]byte(browser)) || isWebRTC([]byte(phone)) {
		t.Fatalf("isWebRTC: browser %v, phone %v", isWebRTC([]byte(browser)), isWebRTC([]byte(phone)))
	}
}
