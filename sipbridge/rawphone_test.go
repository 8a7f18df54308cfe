package sipbridge

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// rawPhone is a SIP user agent written by hand, over UDP or TCP: the test decides every
// byte it sends (a phone behind NAT writes addresses that are not its own) and reads every
// message it receives.
type rawPhone struct {
	t    *testing.T
	udp  net.PacketConn
	tcp  net.Conn
	node string // the node's address
	got  chan sip.Message
}

func newRawPhone(t *testing.T, transport, node string) *rawPhone {
	t.Helper()
	p := &rawPhone{t: t, node: node, got: make(chan sip.Message, 256)}
	if transport == "tcp" {
		c, err := net.Dial("tcp", node)
		if err != nil {
			t.Fatal(err)
		}
		p.tcp = c
		go func() {
			fr := newFrameReader(c, 1<<20)
			for {
				data, err := fr.next()
				if err != nil {
					return
				}
				if m, err := sip.ParseMessage(data); err == nil {
					p.got <- m
				}
			}
		}()
	} else {
		network := "udp4"
		if ip, _ := addrIP(node); ip.Is6() {
			network = "udp6"
		}
		pc, err := net.ListenPacket(network, "localhost:0")
		if err != nil {
			t.Fatal(err)
		}
		p.udp = pc
		go func() {
			buf := make([]byte, 65535)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...)); err == nil {
					p.got <- m
				}
			}
		}()
	}
	t.Cleanup(func() {
		if p.udp != nil {
			_ = p.udp.Close()
		}
		if p.tcp != nil {
			_ = p.tcp.Close()
		}
	})
	return p
}

// addr is the phone's real address (what a NAT router would show the node).
func (p *rawPhone) addr() string {
	if p.tcp != nil {
		return p.tcp.LocalAddr().String()
	}
	return p.udp.LocalAddr().String()
}

func (p *rawPhone) send(msg string) {
	p.t.Helper()
	var err error
	if p.tcp != nil {
		_, err = p.tcp.Write([]byte(msg))
	} else {
		var a *net.UDPAddr
		if a, err = net.ResolveUDPAddr("udp", p.node); err == nil {
			_, err = p.udp.WriteTo([]byte(msg), a)
		}
	}
	if err != nil {
		p.t.Fatal(err)
	}
}

func (p *rawPhone) sendMsg(m sip.Message) {
	p.t.Helper()
	p.send(string(encode(m)))
}

// expect returns the next message for which pred holds, skipping others.
func (p *rawPhone) expect(what string, d time.Duration, pred func(sip.Message) bool) sip.Message {
	p.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m := <-p.got:
			if pred(m) {
				return m
			}
		case <-timeout:
			p.t.Fatalf("phone at %s: no %s within %v", p.addr(), what, d)
			return nil
		}
	}
}

func isRequest(method sip.RequestMethod) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == method
	}
}

func isResponse(method sip.RequestMethod) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.CSeq() != nil && r.CSeq().MethodName == method && r.StatusCode >= 200
	}
}

// register sends a REGISTER for user whose Via and Contact name the address "claimed"
// (a private address behind NAT, or the phone's own), and returns the 200 OK.
func (p *rawPhone) register(user, domain, claimed string, cseq int) *sip.Response {
	p.t.Helper()
	tp, param := "UDP", ""
	if p.tcp != nil {
		tp, param = "TCP", ";transport=tcp"
	}
	host, port, _ := net.SplitHostPort(claimed)
	p.send(fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bKreg%d%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=r%d\r\nTo: <sip:%s@%s>\r\nCall-ID: reg-%s\r\nCSeq: %d REGISTER\r\n"+
		"Contact: <sip:%s@%s%s>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
		domain, tp, claimed, cseq, user, user, domain, cseq, user, domain, user, cseq,
		user, net.JoinHostPort(host, port), param))
	res := p.expect("200 to REGISTER", 10*time.Second, isResponse(sip.REGISTER)).(*sip.Response)
	if res.StatusCode != 200 {
		p.t.Fatalf("REGISTER: %d %s", res.StatusCode, res.Reason)
	}
	return res
}

// answer answers req 200 OK with a Contact naming the address "claimed", as a phone
// behind NAT does.
func (p *rawPhone) answer(req *sip.Request, user, claimed string) {
	p.t.Helper()
	res := sip.NewResponseFromRequest(req, 200, "OK", []byte("v=0\r\n"))
	if to := res.To(); to != nil && !hasTag(to) {
		to.Params.Add("tag", "phone")
	}
	host, port, _ := net.SplitHostPort(claimed)
	c := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: host}}
	fmt.Sscan(port, &c.Address.Port)
	if p.tcp != nil {
		c.Address.UriParams = sip.NewParams()
		c.Address.UriParams.Add("transport", "tcp")
	}
	res.AppendHeader(c)
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	p.sendMsg(res)
}

// ok answers req 200 OK as it is.
func (p *rawPhone) ok(req *sip.Request) {
	p.t.Helper()
	p.sendMsg(sip.NewResponseFromRequest(req, 200, "OK", nil))
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return strings.Trim(h, "[]")
}
