// Package softphone runs real softphones for tests.
//
// Baresip (Start, StartBaresip): the package writes a configuration with one account
// registered at a given node, starts baresip with its console module on UDP, and lets a
// test dial, query the console, watch the output and stop it. Options place it
// elsewhere, e.g. in a network namespace (its console commands are then sent from inside
// the namespace), with a given address and RTP port range, a contacts file, or manual
// answering. Start returns once baresip is ready, and starts it again on other ports when
// one it was given was taken meanwhile; its audio is the ausine module's 440 Hz tone.
//
// Linphone (StartLinphone): linphonec, Debian's linphone-cli, registered at a node with
// the node as its outbound proxy. It answers by itself; having no sound card it plays WAV
// files, and PlayTone sends a 440 Hz tone in the current call.
//
// Tests skip when the softphone is missing, and fail with CI=true.
package softphone
