package sipua

import (
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"
	sdp "github.com/pion/sdp/v3"
)

// ErrBadOption reports an invalid option or argument of a UA.
var ErrBadOption = errors.New("sipua: invalid option")

// hasSDP reports whether m carries an SDP body (Content-Type application/sdp).
func hasSDP(m sip.Message) bool {
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

func parseSDP(body []byte) (*sdp.SessionDescription, error) {
	sd := &sdp.SessionDescription{}
	if err := sd.Unmarshal(body); err != nil {
		return nil, err
	}
	return sd, nil
}

func hasTag(to *sip.ToHeader) bool {
	if to == nil {
		return false
	}
	_, ok := to.Params.Get("tag")
	return ok
}
