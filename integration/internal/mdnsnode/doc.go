// Command mdnsnode is a test helper: it starts a libp2p host and, for each
// domain of -domain (a comma-separated list), a bootstrap.Bootstrapper with
// mDNS only, and prints one line per event:
//
//	READY <peer ID> …
//	FOUND <peer ID> source=<source> domain=<domain> after=<duration since start>
//	CONNECTED <peer ID> source=<source> domain=<domain> after=<duration>
//	FAILED <peer ID> source=<source> domain=<domain> err=<error>
//	JOINED source=<source> domain=<domain> after=<duration>
//
// It runs until SIGTERM or SIGINT.
package main
