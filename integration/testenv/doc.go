// Package testenv checks the prerequisites of hiersip's system tests: root,
// external binaries (ip, iptables, baresip, sipp, …) and Linux network
// namespaces.
//
// When a prerequisite is missing, a test is skipped on a developer machine
// but fails when the environment variable CI is "true", so that CI never
// passes by skipping.
//
// # Usage
//
//	func TestCall(t *testing.T) {
//		testenv.RequireNetns(t)
//		sipp := testenv.RequireBinary(t, "sipp")
//		…
//	}
package testenv
