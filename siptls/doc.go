// Package siptls provides the TLS material of a SIP node (sips:, RFC 5630;
// SIP over TLS and secure WebSocket, RFC 7118): a certificate loaded from
// files or self-signed in the data directory, and tls.Configs for serving
// phones and servers and for connecting to SIP servers.
//
// # Usage
//
//	cert, err := siptls.Certificate(siptls.WithSelfSigned(dataDir, "sip.example.org", "192.0.2.10"))
//	// or siptls.Certificate(siptls.WithFiles("/etc/hiersip/tls.crt", "/etc/hiersip/tls.key"))
//	serverConf, err := siptls.Server(cert, siptls.WithClientAuth(siptls.ClientAuthNone, ""))
//	ln, err := net.Listen("tcp", ":5061")
//	go sipgoServer.ServeTLS(tls.NewListener(ln, serverConf)) // ServeWSS likewise
//
//	clientConf, err := siptls.Client("example.com")          // verified against the system roots
//	ua, err := sipgo.NewUA(sipgo.WithUserAgenTLSConfig(clientConf))
//
// A self-signed certificate is ECDSA P-256, names the configured DNS names
// and IP addresses, is valid for a year and is made anew a month before it
// ends or when the names change; its key is written 0600 and both files are
// written atomically (a temporary file, synced, renamed), key first. A
// damaged file is an error naming it, never replaced silently.
//
// Servers take TLS 1.2 or later. Client certificates are not asked for by
// default (phones prove themselves with digest inside TLS); "request" asks
// and verifies one that is given against a CA file; "require" needs one
// signed by the CA file (server-to-server mutual TLS, RFC 5922 §7.3).
//
// Clients verify the server against the system's roots or a CA file and
// check that its certificate names the SIP domain (RFC 5922 §4: the domain
// of the URI, not the SRV target the DNS gave). sipgo dials an address and
// puts that address in ServerName; WithIdentities maps it back to the SIP
// domain(s) the caller resolved to that address.
//
// # Security
//
// The key is the node's TLS identity: it stays in the data directory, 0600
// (a key file readable by others is logged as a warning). A self-signed
// certificate gives encryption but no authentication until the peer pins it
// (gives the certificate file as its CA file): a phone that accepts any
// certificate can be intercepted. Digest passwords still travel only inside
// the TLS connection, which is why an Internet-facing registrar should take
// TLS. With client_auth none, anyone may open a TLS connection; what they
// may do is the registrar's and proxy's rules, as over TCP.
package siptls
