// Package softphone runs a real softphone, baresip, for tests: it writes a
// configuration with one account registered at a given node, starts baresip
// with its console module on UDP, and lets a test dial, watch its output and
// stop it. Tests skip when baresip is missing, and fail with CI=true.
package softphone
