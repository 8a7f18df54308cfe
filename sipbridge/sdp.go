package sipbridge

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	sdp "github.com/pion/sdp/v3"

	"github.com/hiersip/hiersip/internal/sipsdp"
)

// anchorAttr is the session-level SDP attribute by which an end node that anchors a call's
// media tells the other end node so: "a=x-hiersip-anchor:<peer-id>", followed by the
// call's leg token when the SDP is a device's at a callee's node (media.go). It travels only
// between nodes: a node removes it before an SDP reaches its phone, and replaces whatever
// a phone put there.
const anchorAttr = "x-hiersip-anchor"

// iceAttrs are the ICE attributes (RFC 8839) removed from an SDP whose addresses the node
// replaced: the phone would otherwise run connectivity checks against candidates that the
// node's port is not among.
var iceAttrs = map[string]bool{
	"ice-ufrag": true, "ice-pwd": true, "ice-options": true, "ice-lite": true, "ice-mismatch": true,
	"ice-pacing": true, "candidate": true, "remote-candidates": true, "end-of-candidates": true,
}

// hasSDP reports whether m carries an SDP body; parseSDP parses one (package sipsdp).
var (
	hasSDP   = sipsdp.Has
	parseSDP = sipsdp.Parse
)

// sdpStream is what the relay needs of one m-line.
type sdpStream struct {
	port      int            // 0: the stream is rejected or disabled
	rtp, rtcp netip.AddrPort // where the phone receives (rtcp invalid: RTP port + 1)
	rtcpPort  int            // a=rtcp's port, 0 without one
	hold      bool           // a=inactive or the c= hold address 0.0.0.0: no RTP expected
}

// streamsOf reads the m-lines of sd.
func streamsOf(sd *sdp.SessionDescription) []sdpStream {
	sessInactive := hasAttr(sd.Attributes, "inactive")
	out := make([]sdpStream, len(sd.MediaDescriptions))
	for i, md := range sd.MediaDescriptions {
		st := sdpStream{port: md.MediaName.Port.Value}
		ci := md.ConnectionInformation
		if ci == nil {
			ci = sd.ConnectionInformation
		}
		var ip netip.Addr
		if ci != nil && ci.Address != nil {
			ip, _ = netip.ParseAddr(ci.Address.Address)
		}
		if ip.IsValid() && ip.IsUnspecified() {
			st.hold = true
		}
		if hasAttr(md.Attributes, "inactive") || (sessInactive && !hasAnyDirection(md.Attributes)) {
			st.hold = true
		}
		if ip.IsValid() && !ip.IsUnspecified() && st.port > 0 && st.port < 65536 {
			st.rtp = netip.AddrPortFrom(ip.Unmap(), uint16(st.port))
		}
		if v, ok := md.Attribute("rtcp"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				if p, err := strconv.Atoi(f[0]); err == nil && p > 0 && p < 65536 {
					st.rtcpPort = p
					rip := ip
					if len(f) >= 4 {
						if a, err := netip.ParseAddr(f[3]); err == nil {
							rip = a
						}
					}
					if rip.IsValid() && !rip.IsUnspecified() {
						st.rtcp = netip.AddrPortFrom(rip.Unmap(), uint16(p))
					}
				}
			}
		}
		out[i] = st
	}
	return out
}

func hasAttr(as []sdp.Attribute, key string) bool {
	for _, a := range as {
		if a.Key == key {
			return true
		}
	}
	return false
}

func hasAnyDirection(as []sdp.Attribute) bool {
	for _, a := range as {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return true
		}
	}
	return false
}

// anchorOf returns the peer ID in sd's anchor attribute and the leg token after it ("":
// none, or one that is not a valid token).
func anchorOf(sd *sdp.SessionDescription) (peer.ID, string, bool) {
	v, ok := sd.Attribute(anchorAttr)
	if !ok {
		return "", "", false
	}
	f := strings.Fields(v)
	if len(f) == 0 || len(f) > 2 {
		return "", "", false
	}
	p, err := peer.Decode(f[0])
	if err != nil {
		return "", "", false
	}
	if len(f) == 2 && legToken(f[1]) {
		return p, f[1], true
	}
	return p, "", true
}

// setAnchor replaces sd's anchor attributes with one naming id ("": none).
func setAnchor(sd *sdp.SessionDescription, id string) {
	as := sd.Attributes[:0]
	for _, a := range sd.Attributes {
		if a.Key != anchorAttr {
			as = append(as, a)
		}
	}
	sd.Attributes = as
	if id != "" {
		sd.Attributes = append(sd.Attributes, sdp.NewAttribute(anchorAttr, id))
	}
}

// rewriteForPhone makes sd, an SDP of the other end's phone, point this node's phone at the
// node: the connection addresses become ip, each active m-line's port the session's RTP
// port (ports[i], 0 for m-lines left alone) and its a=rtcp the session's RTCP port (the
// RTP port when the other phone multiplexes RTCP on its RTP port); ICE attributes and the
// anchor attribute go. Rejected streams (port 0), the hold address 0.0.0.0, rtcp-mux,
// direction, codecs and crypto attributes stay as they were.
func rewriteForPhone(sd *sdp.SessionDescription, ip netip.Addr, ports [][2]int) {
	addrType := "IP4"
	if ip.Is6() && !ip.Is4In6() {
		addrType = "IP6"
	}
	ipStr := ip.Unmap().String()
	setConn := func(ci *sdp.ConnectionInformation) {
		if ci == nil || ci.Address == nil {
			return
		}
		if a, err := netip.ParseAddr(ci.Address.Address); err == nil && a.IsUnspecified() {
			return // hold
		}
		ci.AddressType, ci.Address = addrType, &sdp.Address{Address: ipStr}
	}
	setConn(sd.ConnectionInformation)
	sd.Origin.AddressType, sd.Origin.UnicastAddress = addrType, ipStr
	setAnchor(sd, "")
	sd.Attributes = withoutICE(sd.Attributes)
	for i, md := range sd.MediaDescriptions {
		md.Attributes = withoutICE(md.Attributes)
		if i >= len(ports) || ports[i][0] == 0 || md.MediaName.Port.Value == 0 {
			continue
		}
		orig := md.MediaName.Port.Value
		md.MediaName.Port.Value = ports[i][0]
		setConn(md.ConnectionInformation)
		for j, a := range md.Attributes {
			if a.Key != "rtcp" {
				continue
			}
			f := strings.Fields(a.Value)
			if len(f) == 0 {
				continue
			}
			port := ports[i][1]
			if p, err := strconv.Atoi(f[0]); err == nil && p == orig {
				port = ports[i][0] // RTCP on the RTP port
			}
			v := strconv.Itoa(port)
			if len(f) >= 4 {
				v += " IN " + addrType + " " + ipStr
			}
			md.Attributes[j].Value = v
		}
	}
}

func withoutICE(as []sdp.Attribute) []sdp.Attribute {
	out := as[:0]
	for _, a := range as {
		if !iceAttrs[a.Key] {
			out = append(out, a)
		}
	}
	return out
}
