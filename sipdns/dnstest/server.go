package dnstest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// ErrClosed is returned by a second Close.
var ErrClosed = fmt.Errorf("dnstest: server closed: %w", net.ErrClosed)

// Server is a running DNS server on a loopback port. Its methods are safe
// for concurrent use.
type Server struct {
	// Addr is the server's host:port, the same for UDP and TCP.
	Addr string

	udp, tcp *dns.Server
	wg       sync.WaitGroup

	mu      sync.Mutex
	records map[key][]dns.RR // by owner name and type
	names   map[string]bool  // owner names with any record
	soa     []*dns.SOA
	fail    int // an Rcode to answer every query with, or 0

	queries atomic.Int64
	closed  atomic.Bool
}

type key struct {
	name  string
	qtype uint16
}

// Start starts a server on 127.0.0.1 with the records given in zone-file
// syntax (one record a string).
func Start(records ...string) (*Server, error) {
	s := &Server{records: map[key][]dns.RR{}, names: map[string]bool{}}
	if err := s.Add(records...); err != nil {
		return nil, err
	}
	// One port for UDP and TCP: a free UDP port's TCP twin may be taken,
	// so try a few.
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("dnstest: %w", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("dnstest: no port free for both UDP and TCP: %w", err)
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	started := make(chan error, 4)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { started <- nil }
		s.wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil && !s.closed.Load() {
				started <- err
			}
		})
	}
	for range 2 {
		if err := <-started; err != nil {
			s.closed.Store(true)
			_ = s.udp.Shutdown()
			_ = s.tcp.Shutdown()
			pc.Close()
			ln.Close()
			s.wg.Wait()
			return nil, fmt.Errorf("dnstest: serve: %w", err)
		}
	}
	return s, nil
}

// Add adds records given in zone-file syntax.
func (s *Server) Add(records ...string) error {
	rrs := make([]dns.RR, 0, len(records))
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			return fmt.Errorf("dnstest: record %q: %w", r, err)
		}
		if rr == nil {
			return fmt.Errorf("dnstest: record %q is empty", r)
		}
		rrs = append(rrs, rr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		h := rr.Header()
		h.Name = strings.ToLower(h.Name)
		k := key{h.Name, h.Rrtype}
		s.records[k] = append(s.records[k], rr)
		s.names[h.Name] = true
		if soa, ok := rr.(*dns.SOA); ok {
			s.soa = append(s.soa, soa)
		}
	}
	return nil
}

// Remove removes every record of the owner name and type (dns.TypeSRV…);
// dns.TypeANY removes all the name's records.
func (s *Server) Remove(name string, qtype uint16) {
	name = strings.ToLower(dns.Fqdn(name))
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.records {
		if k.name == name && (qtype == dns.TypeANY || k.qtype == qtype) {
			delete(s.records, k)
		}
	}
	s.names[name] = false
	for k := range s.records {
		if k.name == name {
			s.names[name] = true
		}
	}
	if !s.names[name] {
		delete(s.names, name)
	}
}

// Fail makes the server answer every query with rcode (dns.RcodeServerFailure,
// dns.RcodeRefused…); 0 makes it answer normally again.
func (s *Server) Fail(rcode int) {
	s.mu.Lock()
	s.fail = rcode
	s.mu.Unlock()
}

// Queries returns how many queries the server received.
func (s *Server) Queries() int64 { return s.queries.Load() }

// Close stops the server. A second Close returns ErrClosed.
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	err := errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
	s.wg.Wait()
	return err
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	if len(req.Question) != 1 {
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	m.SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	if s.fail != 0 {
		m.Rcode = s.fail
		s.mu.Unlock()
		_ = w.WriteMsg(m)
		return
	}
	for _, rr := range s.records[key{name, q.Qtype}] {
		m.Answer = append(m.Answer, dns.Copy(rr))
	}
	if len(m.Answer) == 0 {
		if !s.names[name] && !s.hasBelow(name) {
			m.Rcode = dns.RcodeNameError
		}
		if soa := s.zoneSOA(name); soa != nil {
			m.Ns = append(m.Ns, dns.Copy(soa))
		}
	}
	s.mu.Unlock()
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// hasBelow reports whether some name below name has records (an "empty
// non-terminal" exists and must not be NXDOMAIN, RFC 8020).
func (s *Server) hasBelow(name string) bool {
	for n := range s.names {
		if strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

func (s *Server) zoneSOA(name string) *dns.SOA {
	var best *dns.SOA
	for _, soa := range s.soa {
		z := soa.Hdr.Name
		if (name == z || strings.HasSuffix(name, "."+z) || z == ".") && (best == nil || len(z) > len(best.Hdr.Name)) {
			best = soa
		}
	}
	return best
}
