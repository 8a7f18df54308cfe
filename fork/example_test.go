package fork_test

import (
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/fork"
)

// A call to alice, whose desk phone and laptop are registered at this node:
// both ring, the laptop is busy, the desk phone answers.
func Example() {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	alice, _ := domains.ParseAOR("sip:alice@pastry")
	plan := fork.NewPlan(fork.Input{AOR: alice, Now: now, Local: []fork.Contact{
		{URI: "sip:alice@10.0.0.2:5062", Instance: "<urn:uuid:desk>", Since: now.Add(-time.Hour), Expires: now.Add(time.Hour)},
		{URI: "sip:alice@10.0.0.3:5062", Instance: "<urn:uuid:laptop>", Since: now.Add(-time.Minute), Expires: now.Add(time.Hour)},
	}})
	starts := make([]fork.State, len(plan.Targets))
	for i, t := range plan.Targets {
		starts[i] = fork.Calling
		fmt.Println("branch", i, "to", t.Contact)
	}
	sel, _, _ := fork.NewSelector(sip.INVITE, starts...)
	sel.Response(0, sip.NewResponse(180, "Ringing"))
	sel.Response(1, sip.NewResponse(180, "Ringing"))
	a := sel.Response(0, sip.NewResponse(486, "Busy Here"))
	fmt.Println("after 486 on branch 0: forward", len(a.Forward))
	a = sel.Response(1, sip.NewResponse(200, "OK"))
	fmt.Println("after 200 on branch 1: forward", a.Forward[0].StatusCode, "cancel", a.Cancel, "done", sel.Done())
	// Output:
	// branch 0 to sip:alice@10.0.0.3:5062
	// branch 1 to sip:alice@10.0.0.2:5062
	// after 486 on branch 0: forward 0
	// after 200 on branch 1: forward 200 cancel [] done true
}
