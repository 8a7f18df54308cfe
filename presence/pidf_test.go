package presence

import (
	"errors"
	"strings"
	"testing"
)

// rfc3863 is the example of RFC 3863 §6.
const rfc3863 = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:im="urn:ietf:params:xml:ns:pidf:im"
    xmlns:myex="http://id.example.com/presence/"
    entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status>
      <basic>open</basic>
      <im:im>busy</im:im>
      <myex:location>home</myex:location>
    </status>
    <contact priority="0.8">im:someone@mobilecarrier.net</contact>
    <note xml:lang="en">Don't Disturb Please!</note>
    <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
    <timestamp>2001-10-27T16:49:29Z</timestamp>
  </tuple>
  <tuple id="eg92n8">
    <status>
      <basic>open</basic>
    </status>
    <contact priority="1.0">mailto:someone@example.com</contact>
  </tuple>
  <note>I'll be in Tokyo next week</note>
</presence>
`

// rpid is a document with RFC 4479/4480 extensions nested under the root.
const rpid = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@pastry">
  <tuple id="t1"><status><basic>open</basic></status></tuple>
  <dm:person id="p1"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>
</presence>`

func checkRFC3863(t *testing.T, p *Presence) {
	t.Helper()
	if p.Entity != "pres:someone@example.com" || len(p.Tuples) != 2 || len(p.Notes) != 1 {
		t.Fatalf("document: %+v", p)
	}
	t1 := p.Tuples[0]
	if t1.ID != "bs35r9" || t1.Basic != Open || t1.Contact == nil || t1.Contact.URI != "im:someone@mobilecarrier.net" ||
		t1.Contact.Priority != "0.8" || t1.Timestamp != "2001-10-27T16:49:29Z" {
		t.Errorf("tuple 1: %+v", t1)
	}
	if len(t1.Notes) != 2 || t1.Notes[0] != (Note{"en", "Don't Disturb Please!"}) || t1.Notes[1].Lang != "fr" {
		t.Errorf("notes: %+v", t1.Notes)
	}
	if len(t1.Status) != 2 || t1.Status[0].XMLName.Space != "urn:ietf:params:xml:ns:pidf:im" || t1.Status[0].XMLName.Local != "im" ||
		t1.Status[0].Text != "busy" || t1.Status[1].XMLName.Space != "http://id.example.com/presence/" || t1.Status[1].Text != "home" {
		t.Errorf("status extensions: %+v", t1.Status)
	}
	if p.Tuples[1].ID != "eg92n8" || p.Tuples[1].Contact.Priority != "1.0" || p.Notes[0].Text != "I'll be in Tokyo next week" {
		t.Errorf("tuple 2 or note: %+v %+v", p.Tuples[1], p.Notes)
	}
}

func TestPIDFRFC3863(t *testing.T) {
	p, err := ParsePIDF([]byte(rfc3863))
	if err != nil {
		t.Fatal(err)
	}
	checkRFC3863(t, p)
	out, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParsePIDF(out)
	if err != nil {
		t.Fatalf("our own output does not parse: %v\n%s", err, out)
	}
	checkRFC3863(t, again)
	if !strings.Contains(string(out), `xml:lang="fr"`) || !strings.HasPrefix(string(out), "<?xml") {
		t.Errorf("output:\n%s", out)
	}
}

func TestPIDFExtensions(t *testing.T) {
	p, err := ParsePIDF([]byte(rpid))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Extensions) != 1 || p.Extensions[0].XMLName.Local != "person" || len(p.Extensions[0].Nodes) != 1 ||
		p.Extensions[0].Nodes[0].Nodes[0].XMLName.Local != "on-the-phone" {
		t.Fatalf("person: %+v", p.Extensions)
	}
	out, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParsePIDF(out)
	if err != nil || again.Extensions[0].Nodes[0].Nodes[0].XMLName.Space != "urn:ietf:params:xml:ns:pidf:rpid" {
		t.Fatalf("round trip: %v\n%s", err, out)
	}
}

func TestPIDFRefused(t *testing.T) {
	cases := map[string]string{
		"not XML":              "hello",
		"another root":         `<presense xmlns="urn:ietf:params:xml:ns:pidf" entity="x"/>`,
		"another namespace":    `<presence xmlns="urn:example" entity="x"/>`,
		"no entity":            `<presence xmlns="urn:ietf:params:xml:ns:pidf"/>`,
		"tuple without id":     `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x"><tuple><status/></tuple></presence>`,
		"tuple without status": `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x"><tuple id="a"/></presence>`,
		"two tuples one id":    `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x"><tuple id="a"><status/></tuple><tuple id="a"><status/></tuple></presence>`,
		"bad basic":            `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x"><tuple id="a"><status><basic>maybe</basic></status></tuple></presence>`,
		"a DTD":                `<!DOCTYPE lol [<!ENTITY lol "lol">]><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="&lol;"/>`,
		"too deep":             `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x">` + strings.Repeat("<a>", 20) + strings.Repeat("</a>", 20) + `</presence>`,
		"too large":            `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x">` + strings.Repeat(" ", MaxDocument) + `</presence>`,
		"too many tuples":      `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x">` + strings.Repeat(`<tuple id="a"><status/></tuple>`, maxTuples+1) + `</presence>`,
		"empty":                "",
	}
	for name, doc := range cases {
		if _, err := ParsePIDF([]byte(doc)); !errors.Is(err, ErrBadDocument) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
