package presence_test

import (
	"fmt"
	"time"

	"github.com/hiersip/hiersip/presence"
)

// Bob watches alice's presence; her desk phone registers, then publishes
// that she is away.
func Example() {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	a, _ := presence.NewAgent()
	id := presence.SubID{CallID: "c1", RemoteTag: "bob-tag", LocalTag: "our-tag", Event: presence.EventPresence}
	r, ns := a.Subscribe(now, presence.SubscribeRequest{ID: id, Watcher: "sip:bob@far", Presentity: "sip:alice@pastry", Expires: -1})
	fmt.Println(r.Status, r.Expires, ns[0].State)

	now = now.Add(10 * time.Second)
	ns = a.SetRegistration(now, "sip:alice@pastry", []presence.RegisteredContact{
		{ID: "desk", URI: "sip:alice@10.0.0.2", State: "active", Event: "registered", Since: now, Expires: now.Add(time.Hour)}})
	doc, _ := presence.ParsePIDF(ns[0].Body)
	fmt.Println("registered:", doc.Tuples[0].Basic)

	now = now.Add(10 * time.Second)
	r, ns = a.Publish(now, presence.PublishRequest{Presentity: "sip:alice@pastry", Publisher: "sip:alice@pastry",
		Event: presence.EventPresence, Expires: -1, ContentType: presence.ContentTypePIDF,
		Body: []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:alice@pastry">` +
			`<tuple id="desk"><status><basic>closed</basic></status><note>away</note></tuple></presence>`)})
	doc, _ = presence.ParsePIDF(ns[0].Body)
	fmt.Println(r.Status, "published:", doc.Tuples[0].Basic, doc.Tuples[0].Notes[0].Text)
	// Output:
	// 200 3600 active;expires=3600
	// registered: open
	// 200 published: closed away
}

// Describe sums up a NOTIFY body in one line, as `hiersip watch` prints it.
func ExampleDescribe() {
	sum := presence.Summary{Waiting: true, Account: "sip:alice@pastry",
		Counts: []presence.ClassCount{{Class: presence.TextMessage, New: 2}}}
	fmt.Println(presence.Describe(presence.ContentTypeSummary, sum.Marshal()))
	doc, _ := (&presence.Presence{Entity: "pres:alice@pastry",
		Tuples: []presence.Tuple{{ID: "desk", Basic: presence.Open}}}).Marshal()
	fmt.Println(presence.Describe(presence.ContentTypePIDF, doc))
	fmt.Println(presence.Describe("text/plain", []byte("hello")))
	// Output:
	// Messages-Waiting: yes, Text-Message 2/0
	// open (1 tuple)
	// 5 bytes of text/plain
}
