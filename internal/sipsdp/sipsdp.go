package sipsdp

import (
	"strings"

	"github.com/emiago/sipgo/sip"
	sdp "github.com/pion/sdp/v3"
)

// Has reports whether m carries an SDP body: a body, with Content-Type
// application/sdp (parameters and case aside).
func Has(m sip.Message) bool {
	if len(m.Body()) == 0 {
		return false
	}
	ct, ok := m.(interface{ ContentType() *sip.ContentTypeHeader })
	if !ok || ct.ContentType() == nil {
		return false
	}
	mt, _, _ := strings.Cut(ct.ContentType().Value(), ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/sdp")
}

// Parse parses an SDP body.
func Parse(body []byte) (*sdp.SessionDescription, error) {
	sd := &sdp.SessionDescription{}
	if err := sd.Unmarshal(body); err != nil {
		return nil, err
	}
	return sd, nil
}
