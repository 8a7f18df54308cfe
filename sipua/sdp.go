package sipua

import (
	"errors"

	"github.com/emiago/sipgo/sip"

	"github.com/hiersip/hiersip/internal/sipsdp"
)

// ErrBadOption reports an invalid option or argument of a UA.
var ErrBadOption = errors.New("sipua: invalid option")

// hasSDP reports whether m carries an SDP body; parseSDP parses one (package sipsdp).
var (
	hasSDP   = sipsdp.Has
	parseSDP = sipsdp.Parse
)

func hasTag(to *sip.ToHeader) bool {
	if to == nil {
		return false
	}
	_, ok := to.Params.Get("tag")
	return ok
}
