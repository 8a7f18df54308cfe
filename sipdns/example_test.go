package sipdns_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/hiersip/hiersip/sipdns"
	"github.com/hiersip/hiersip/sipdns/dnstest"
)

// A domain publishes NAPTR and SRV records for two servers; the resolver
// returns them in the order to try, the first transport the domain prefers
// and the client supports first.
func Example() {
	srv, err := dnstest.Start(
		`example.test. 60 IN NAPTR 10 50 "s" "SIP+D2T" "" _sip._tcp.example.test.`,
		`example.test. 60 IN NAPTR 20 50 "s" "SIP+D2U" "" _sip._udp.example.test.`,
		`_sip._tcp.example.test. 60 IN SRV 10 0 5060 sip1.example.test.`,
		`_sip._tcp.example.test. 60 IN SRV 20 0 5060 sip2.example.test.`,
		`_sip._udp.example.test. 60 IN SRV 10 0 5060 sip1.example.test.`,
		`sip1.example.test. 60 IN A 192.0.2.1`,
		`sip2.example.test. 60 IN A 192.0.2.2`,
	)
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	r, err := sipdns.New(sipdns.WithServers(srv.Addr), sipdns.WithTransports("udp", "tcp"))
	if err != nil {
		panic(err)
	}
	defer r.Close()

	targets, err := r.Resolve(context.Background(), "sip:bob@example.test")
	if err != nil {
		panic(err)
	}
	for _, t := range targets {
		fmt.Println(t)
	}

	// A domain that does not exist: 604 at once.
	_, err = r.Resolve(context.Background(), "sip:bob@nowhere.test")
	code, reason := sipdns.StatusCode(err)
	fmt.Println(errors.Is(err, sipdns.ErrNXDomain), code, reason)
	// Output:
	// tcp sip1.example.test 192.0.2.1:5060
	// tcp sip2.example.test 192.0.2.2:5060
	// udp sip1.example.test 192.0.2.1:5060
	// true 604 Does Not Exist Anywhere
}

// A policy refuses some domains and sends others to a fixed next hop.
func ExamplePolicy() {
	p := &sipdns.Policy{
		Deny:   []string{"example.org"},
		Routes: map[string]string{"partner.test": "sips:gw.partner.test"},
	}
	fmt.Println(p.CheckDomain("sip.example.org"))
	fmt.Println(p.CheckDomain("example.com"))
	fmt.Println(p.Route("bob.partner.test"))
	// Output:
	// sipdns: refused by policy: domain sip.example.org (deny "example.org")
	// <nil>
	// sips:gw.partner.test
}
