package sipbridge

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Benchmarks of the SIP plane, one per layer, each reporting allocations per message
// ("allocs/msg") besides Go's per-operation figures:
//
//	BenchmarkLayerParse        transport: one datagram parsed (sipgo's parser)
//	BenchmarkLayerAdmission    the admission chain up to the dialog queue, a new INVITE
//	BenchmarkLayerTransaction  a server transaction (INVITE in, 100, 180, 200 out) and a
//	                           client transaction (INVITE out, 180, 200 in), over UDP
//	BenchmarkLayerRoute        route, for the kinds of target a call meets
//	BenchmarkProxyPath         whole calls UA → node → node → UA on loopback (INVITE, 100,
//	                           180, 200, ACK, BYE, 200), sequential; allocations of both
//	                           nodes and both raw UAs, per message a node reads (13 a call:
//	                           6 at the caller's node, 7 at the callee's)
//
// Run: go test -run XXX -bench Layer -benchmem ./sipbridge (and -bench ProxyPath).

// benchInvite is an INVITE as sipp's uac sends it, with an SDP offer.
func benchInvite(branch, callID string, port int) []byte {
	sdp := "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	return fmt.Appendf(nil, "INVITE sip:bob@pastry SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s\r\n"+
		"From: sipp <sip:sipp@127.0.0.1:%d>;tag=1234SIPpTag001\r\n"+
		"To: <sip:bob@pastry>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: sip:sipp@127.0.0.1:%d\r\n"+
		"Max-Forwards: 70\r\n"+
		"Subject: Performance Test\r\n"+
		"Content-Type: application/sdp\r\n"+
		"Content-Length: %d\r\n\r\n%s", port, branch, port, callID, port, len(sdp), sdp)
}

func benchOK(req []byte) []byte {
	m, _ := sip.ParseMessage(req)
	res := sip.NewResponseFromRequest(m.(*sip.Request), 200, "OK", nil)
	res.To().Params.Add("tag", "callee")
	return []byte(res.String())
}

// loop runs f b.N times, reporting allocations per operation and per message (msgs
// messages per call of f).
func loop(b *testing.B, msgs float64, f func()) {
	b.Helper()
	b.ReportAllocs()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	n := 0
	for b.Loop() {
		f()
		n++
	}
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(n)/msgs, "allocs/msg")
}

func BenchmarkLayerParse(b *testing.B) {
	p := newParser()
	inv := benchInvite("z9hG4bK-1", "parse@bench", 5070)
	ok := benchOK(inv)
	for _, c := range []struct {
		name string
		data []byte
	}{{"INVITE", inv}, {"200", ok}} {
		b.Run(c.name, func(b *testing.B) {
			f := func() {
				if _, err := p.ParseSIP(c.data); err != nil {
					b.Fatal(err)
				}
			}
			loop(b, 1, f)
		})
	}
}

// benchNode is a node with rate limits off, as a load test runs it.
func benchNode(b testing.TB, dir *memDir) *testNode {
	l := DefaultLimits()
	l.SourceRate, l.PeerRate = 0, 0
	l.MaxSourceTx, l.MaxUATx = 1<<20, 1<<20
	return newTestNode(b, dir, "pastry", WithLimits(l))
}

func BenchmarkLayerAdmission(b *testing.B) {
	n := benchNode(b, newMemDir())
	bb := n.b
	var served *inbound
	c := chain(handlerFunc(func(in *inbound) { served = in }), bb.rateLink, bb.validLink, bb.trustLink, bb.txLink,
		bb.boundLink, bb.digestLink)
	msg, err := bb.parser.ParseSIP(benchInvite("z9hG4bK-adm", "adm@bench", 5070))
	if err != nil {
		b.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetSource("127.0.0.1:5070")
	req.SetTransport("UDP")
	src := netip.MustParseAddrPort("127.0.0.1:5070")
	f := func() {
		served = nil
		c.serve(&inbound{req: req, from: path{kind: tpUDP, addr: src}, key: "127.0.0.1", at: time.Now()})
		if served == nil || served.stx == nil {
			b.Fatal("not admitted")
		}
		served.stx.Terminate() // the next round opens a new transaction
	}
	loop(b, 1, f)
}

func BenchmarkLayerTransaction(b *testing.B) {
	n := benchNode(b, newMemDir())
	bb := n.b
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	go func() { // drain
		buf := make([]byte, 65535)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	to := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	msg, _ := bb.parser.ParseSIP(benchInvite("z9hG4bK-tx", "tx@bench", int(to.Port())))
	req := msg.(*sip.Request)
	req.SetSource(to.String())
	b.Run("server", func(b *testing.B) {
		f := func() {
			in := &inbound{req: req, from: path{kind: tpUDP, addr: to}, key: "127.0.0.1", at: time.Now()}
			if bb.txl.receiveRequest(in) || in.stx == nil {
				b.Fatal("no new transaction")
			}
			for _, code := range []int{100, 180, 200} {
				if err := in.stx.Respond(bb.newResponse(req, code, "")); err != nil {
					b.Fatal(err)
				}
			}
			in.stx.Terminate()
		}
		loop(b, 4, f)
	})
	b.Run("client", func(b *testing.B) {
		i := 0
		f := func() {
			i++
			fwd := copyRequest(req)
			via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1",
				Port: bb.udpPort, Params: sip.NewParams()}
			via.Params.Add("branch", "z9hG4bKhsclient"+strconv.Itoa(i))
			fwd.PrependHeader(via)
			ct, err := bb.txl.request(path{kind: tpUDP, addr: to}, fwd)
			if err != nil {
				b.Fatal(err)
			}
			for _, code := range []int{180, 200} {
				res := sip.NewResponseFromRequest(fwd, code, "", nil)
				if !ct.deliver(res) {
					b.Fatal("not delivered")
				}
				<-ct.Responses()
			}
			ct.end(sip.ErrTransactionTerminated)
		}
		loop(b, 3, f)
	})
}

func BenchmarkLayerRoute(b *testing.B) {
	dir := newMemDir()
	n := benchNode(b, dir)
	other := benchNode(b, dir)
	bb := n.b
	// bob registered here; carol's binding (at the other node) cached; a contact address.
	contact := sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 45000}
	ua := newTestUA(b, "sip:bob@pastry", n)
	ctx := ctxT(b, 10*time.Second)
	if _, err := ua.RegisterContact(ctx, contact, time.Hour); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	bb.binds.put("sip:carol@pastry", &domains.Binding{AOR: "sip:carol@pastry", Peer: other.h.ID(), Addrs: other.h.Addrs(),
		Expires: now.Add(time.Hour)}, now)
	mk := func(s string) *sip.Request {
		m, err := sip.ParseMessage([]byte(s))
		if err != nil {
			b.Fatal(err)
		}
		return m.(*sip.Request)
	}
	const hdrs = "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@pastry>;tag=1\r\nCall-ID: r\r\nCSeq: 1 %s\r\nMax-Forwards: 70\r\n"
	cases := []struct {
		name string
		req  *sip.Request
		from peer.ID
	}{
		{"registered", mk(fmt.Sprintf("INVITE sip:bob@pastry SIP/2.0\r\nTo: <sip:bob@pastry>\r\n"+hdrs+"Content-Length: 0\r\n\r\n", "INVITE")), ""},
		{"cached-binding", mk(fmt.Sprintf("INVITE sip:carol@pastry SIP/2.0\r\nTo: <sip:carol@pastry>\r\n"+hdrs+"Content-Length: 0\r\n\r\n", "INVITE")), ""},
		{"route-hsn", mk(fmt.Sprintf("BYE sip:carol@127.0.0.1:45001 SIP/2.0\r\nRoute: <sip:127.0.0.1:%d;lr;hsn=%s>,<sip:127.0.0.2:5060;lr;hsn=%s>\r\nTo: <sip:carol@pastry>;tag=2\r\n"+hdrs+"Content-Length: 0\r\n\r\n",
			bb.udpPort, bb.selfStr, other.h.ID(), "BYE")), ""},
		{"contact", mk(fmt.Sprintf("BYE sip:bob@127.0.0.1:45000 SIP/2.0\r\nTo: <sip:bob@pastry>;tag=2\r\n"+hdrs+"Content-Length: 0\r\n\r\n", "BYE")), other.h.ID()},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f := func() {
				if d := bb.route(c.req, c.from, time.Now()); d.code != 0 || d.lookup != nil {
					b.Fatalf("route: %d %s", d.code, d.reason)
				}
			}
			loop(b, 1, f)
		})
	}
}

// BenchmarkProxyPath places whole calls through two nodes, one at a time: a raw UDP caller
// at node 1, a raw UDP callee registered at node 2, the in-dialog ACK and BYE routed by
// the Record-Route set. ns/op is the time of a call; allocs/msg divides the process's
// allocations per call by the 13 messages the two nodes read per call.
func BenchmarkProxyPath(b *testing.B) {
	dir := newMemDir()
	n1, n2 := benchNode(b, dir), benchNode(b, dir)
	connect(b, n1, n2)
	callee, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer callee.Close()
	caller, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer caller.Close()
	ctx := ctxT(b, 20*time.Second)
	cport := callee.LocalAddr().(*net.UDPAddr).Port
	reg := newTestUA(b, "sip:bob@pastry", n2)
	if _, err := reg.RegisterContact(ctx, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: cport}, time.Hour); err != nil {
		b.Fatal(err)
	}
	eventually(b, 10*time.Second, "bob's binding", func() bool { return n1.loc.binding("sip:bob@pastry") != nil })
	go rawCallee(callee, cport)
	node1 := n1.b.udp.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	port := caller.LocalAddr().(*net.UDPAddr).Port
	buf := make([]byte, 65535)
	i := 0
	call := func() {
		i++
		callID := "path-" + strconv.Itoa(i) + "@bench"
		inv := benchInvite("z9hG4bK-path-"+strconv.Itoa(i), callID, port)
		if _, err := caller.WriteToUDPAddrPort(inv, node1); err != nil {
			b.Fatal(err)
		}
		var ok []byte
		for ok == nil {
			_ = caller.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := caller.ReadFromUDPAddrPort(buf)
			if err != nil {
				b.Fatalf("call %d: %v", i, err)
			}
			if bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
				ok = buf[:n]
			}
		}
		ack, bye := inDialog(ok, callID, port, i)
		_, _ = caller.WriteToUDPAddrPort(ack, node1)
		_, _ = caller.WriteToUDPAddrPort(bye, node1)
		for {
			_ = caller.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := caller.ReadFromUDPAddrPort(buf)
			if err != nil {
				b.Fatalf("call %d: BYE: %v", i, err)
			}
			if bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) && bytes.Contains(buf[:n], []byte("2 BYE")) {
				return
			}
		}
	}
	for range 20 { // warm up: streams open, caches filled
		call()
	}
	loop(b, 13, call)
}

// rawCallee answers INVITEs with 180 and 200 and BYEs with 200, copying the headers a
// response copies, by hand (no parser: its allocations would count as the nodes').
func rawCallee(c *net.UDPConn, port int) {
	buf := make([]byte, 65535)
	var out bytes.Buffer
	contact := "Contact: <sip:bob@127.0.0.1:" + strconv.Itoa(port) + ">\r\n"
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		msg := buf[:n]
		var codes []string
		switch {
		case bytes.HasPrefix(msg, []byte("INVITE ")):
			codes = []string{"180 Ringing", "200 OK"}
		case bytes.HasPrefix(msg, []byte("BYE ")):
			codes = []string{"200 OK"}
		default:
			continue
		}
		for _, code := range codes {
			out.Reset()
			out.WriteString("SIP/2.0 " + code + "\r\n")
			for _, line := range bytes.Split(msg, []byte("\r\n")) {
				if len(line) == 0 {
					break
				}
				for _, h := range [][]byte{[]byte("Via:"), []byte("From:"), []byte("Call-ID:"), []byte("CSeq:"), []byte("Record-Route:")} {
					if bytes.HasPrefix(line, h) {
						out.Write(line)
						out.WriteString("\r\n")
					}
				}
				if bytes.HasPrefix(line, []byte("To:")) {
					out.Write(line)
					if !bytes.Contains(line, []byte("tag=")) {
						out.WriteString(";tag=callee")
					}
					out.WriteString("\r\n")
				}
			}
			out.WriteString(contact)
			out.WriteString("Content-Length: 0\r\n\r\n")
			_, _ = c.WriteToUDPAddrPort(out.Bytes(), from)
		}
	}
}

// inDialog builds the caller's ACK and BYE for the 200 OK ok: the Request-URI its Contact,
// the Route set its Record-Routes reversed.
func inDialog(ok []byte, callID string, port, i int) (ack, bye []byte) {
	var to, target []byte
	var rr [][]byte
	for _, line := range bytes.Split(ok, []byte("\r\n")) {
		switch {
		case len(line) == 0:
		case bytes.HasPrefix(line, []byte("To:")):
			to = line
		case bytes.HasPrefix(line, []byte("Record-Route:")):
			rr = append(rr, bytes.TrimSpace(line[len("Record-Route:"):]))
		case bytes.HasPrefix(line, []byte("Contact:")):
			v := bytes.TrimSpace(line[len("Contact:"):])
			target = bytes.Trim(v, "<>")
		}
	}
	mk := func(method string, seq int) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s-%d\r\n", method, target, port, method, i)
		fmt.Fprintf(&b, "From: sipp <sip:sipp@127.0.0.1:%d>;tag=1234SIPpTag001\r\n%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n", port, to, callID, seq, method)
		for j := len(rr) - 1; j >= 0; j-- {
			fmt.Fprintf(&b, "Route: %s\r\n", rr[j])
		}
		b.WriteString("Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
		return b.Bytes()
	}
	return mk("ACK", 1), mk("BYE", 2)
}
