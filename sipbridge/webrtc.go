package sipbridge

import (
	"slices"
	"strings"
)

// WebRTC media is left alone. A browser phone's SDP (RFC 8829, RFC 8842) offers
// UDP/TLS/RTP/SAVPF with a DTLS fingerprint and ICE candidates: its media is
// encrypted end to end with keys bound to the fingerprint, and ICE finds the path
// between the two browsers itself. The node's media relay anchors plain RTP only (it
// rewrites the connection address and drops ICE, sdp.go), which would break both the
// DTLS handshake and ICE, so a call whose SDP is WebRTC is not anchored: the SDP goes on
// as the browser wrote it and the browsers' media flow between them directly (over the
// addresses their candidates name — on one host or LAN, or through STUN/TURN servers the
// page would configure; the node itself relays no WebRTC media). A browser cannot talk
// to a plain RTP phone this way: no RTP/AVP offer is acceptable to it and vice versa (the
// call fails with 488); that needs a media gateway (rtpengine's ICE/DTLS bridging), which
// hiersip does not have.

// isWebRTC reports whether an SDP body is a WebRTC one: a DTLS-SRTP profile
// (UDP/TLS/RTP/SAVP[F]) on a media line, or a DTLS fingerprint.
func isWebRTC(body []byte) bool {
	sd, err := parseSDP(body)
	if err != nil {
		return false
	}
	for _, a := range sd.Attributes {
		if a.Key == "fingerprint" {
			return true
		}
	}
	for _, md := range sd.MediaDescriptions {
		if slices.ContainsFunc(md.MediaName.Protos, func(p string) bool { return strings.EqualFold(p, "TLS") || strings.EqualFold(p, "DTLS") }) {
			return true
		}
		for _, a := range md.Attributes {
			if a.Key == "fingerprint" {
				return true
			}
		}
	}
	return false
}
