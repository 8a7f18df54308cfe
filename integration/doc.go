// Package integration holds hiersip's system tests: several processes in
// Linux network namespaces (package netns) talking over real sockets,
// multicast and NAT (nat_test.go: the NAT test bed; media_test.go: baresip
// phones on its NATed LANs, their RTP counted with tcpdump). They need root
// and iproute2 (media_test.go also baresip and tcpdump); without them they
// are skipped, except in CI (CI=true), where they fail.
package integration
