// Package integration holds hiersip's system tests: several processes in
// Linux network namespaces (package netns) talking over real sockets,
// multicast and, later, NAT. They need root and iproute2; without them they
// are skipped, except in CI (CI=true), where they fail.
package integration
