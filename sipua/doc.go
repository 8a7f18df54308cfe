// Package sipua is hiersip's own SIP user agent, for scripts, tests, demos and load
// generators: Register, Call (INVITE, ACK), Hangup (BYE), Message, auto-answer or
// ring-only, built on sipgo's dialog API. It talks UDP to its node (the node's sipbridge is
// its outbound proxy and registrar).
//
// # Usage
//
//	ua, err := sipua.NewUA("sip:alice@pastry", "127.0.0.1:5060", sipua.WithUALogger(logger))
//	if err != nil { ... }
//	defer ua.Close()
//	if _, err := ua.Register(ctx, time.Hour); err != nil { ... }
//	call, err := ua.Call(ctx, "sip:bob@pastry")
//	if err != nil { ... }
//	defer call.Hangup(ctx)
//
// A UA's Ladder records each datagram it sent or received with a timestamp. It offers
// and answers real SDP (pion/sdp) and sends and receives RTP (a 440 Hz PCMU tone;
// [Call.Media] counts packets): late offers ([WithUALateOffer]), early media
// ([WithUAEarlyMedia]), a video stream ([WithUAVideo]), hold and resume ([Call.Hold],
// [Call.Resume]) and new offers in re-INVITE or UPDATE ([Call.Reoffer]).
//
// The package changes no process-wide state: sipgo's package logger and sip.UDPMTUSize
// stay as they are.
package sipua
