package sipbridge

import (
	"errors"
	"strings"
)

// ErrForbidden, wrapped by a Locator's error, means this node may not do
// what was asked (e.g. register an AOR it holds no enrollment certificate
// for): the bridge answers 403. A *ForbiddenError in the chain supplies the
// reason phrase.
var ErrForbidden = errors.New("sipbridge: forbidden")

// ForbiddenError is an error whose Reason becomes the reason phrase of the
// bridge's 403 answer ("Forbidden: <Reason>"). It matches ErrForbidden.
type ForbiddenError struct{ Reason string }

func (e *ForbiddenError) Error() string { return "sipbridge: forbidden: " + e.Reason }

// Is makes errors.Is(err, ErrForbidden) true.
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

// forbiddenReason returns the 403 reason phrase of err: its ForbiddenError's
// reason on one line, bounded in length.
func forbiddenReason(err error) string {
	reason := "not allowed"
	var fe *ForbiddenError
	if errors.As(err, &fe) && fe.Reason != "" {
		reason = fe.Reason
	}
	reason = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, reason)
	if len(reason) > 200 {
		reason = reason[:200]
	}
	return "Forbidden: " + reason
}
