// Package dnstest runs a small authoritative DNS server on loopback for
// tests, in the spirit of net/http/httptest: records are given in zone-file
// syntax ("_sip._udp.example.test. 60 IN SRV 10 50 5060 sip1.example.test."),
// the server answers over UDP and TCP on one port, and a test can change the
// records, count the queries it received, and make the server fail.
//
// It is built on github.com/miekg/dns. A name with no records of any type
// and not below a delegation gets NXDOMAIN; a name with records of other
// types gets NOERROR with no answers (NODATA). Both carry the zone's SOA in
// the authority section when one is configured, so that resolvers can cache
// the negative answer (RFC 2308).
//
// It is meant for tests and fixtures only: it serves whatever it was given
// to anyone who asks on its loopback port.
package dnstest
