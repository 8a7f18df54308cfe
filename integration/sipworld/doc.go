// Package sipworld starts an ordinary SIP domain for tests: Debian's
// Kamailio as registrar and proxy for example.test, one or more instances on
// loopback ports, and a DNS server on loopback (sipdns/dnstest) that
// publishes them the way an operator would: NAPTR (SIP+D2U, SIP+D2T) → SRV
// (_sip._udp, _sip._tcp; sip1 at priority 10, sip2 at 20, …) → A.
//
// A test resolves the domain with a sipdns.Resolver pointed at World.DNS
// (World.Resolver), registers softphones at the Kamailio it found
// (integration/softphone), and can stop an instance to see failover to the
// next SRV target. It is what hiersip's outbound routing to ordinary SIP
// domains will be tested against.
//
// With Options.WebSocket every Kamailio also serves SIP over WS and WSS
// (RFC 7118; WSS with a self-signed certificate from siptls), handling the
// browser's .invalid Contact with nathelper's aliases, so that the browser
// phone of package web can register and call there (web's
// TestPhoneOverWSSAtKamailio).
//
// Kamailio runs as a child process in its own process group with its config
// and logs in the test's temporary directory; the test's cleanup stops it.
// A missing kamailio binary or module directory skips the test, or fails it
// with CI=true (integration/testenv).
package sipworld
