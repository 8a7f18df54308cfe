// Package softphone runs a real softphone, baresip, for tests: it writes a
// configuration with one account registered at a given node, starts baresip
// with its console module on UDP, and lets a test dial, watch its output and
// stop it. Start with Options runs it elsewhere, e.g. in a network namespace
// (its console commands are then sent from inside the namespace), with a given
// address and RTP port range; Start returns once baresip is ready, and starts it
// again on other ports when one it was given was taken meanwhile; its audio is the ausine module's 440 Hz tone. Tests skip when baresip is missing, and fail with CI=true.
package softphone
