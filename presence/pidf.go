package presence

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"
)

// PIDF (RFC 3863): the presence document of application/pidf+xml.
const (
	NSPIDF          = "urn:ietf:params:xml:ns:pidf"
	ContentTypePIDF = "application/pidf+xml"
	maxTuples       = 32
	maxNotes        = 16
)

// Basic status values of a tuple.
const (
	Open   = "open"
	Closed = "closed"
)

// Presence is a PIDF document: a presentity, its tuples and notes, and
// extension elements of the document (e.g. an RFC 4479 person).
type Presence struct {
	Entity     string // e.g. "pres:alice@pastry"
	Tuples     []Tuple
	Notes      []Note
	Extensions []Node
}

// Tuple is one presence tuple (a device, a service).
type Tuple struct {
	ID         string
	Basic      string // Open, Closed, or "" when absent
	Status     []Node // extension elements of the status (e.g. im:im)
	Extensions []Node // extension elements of the tuple
	Contact    *Contact
	Notes      []Note
	Timestamp  string // xs:dateTime, as given
}

// Contact is a tuple's contact address with its priority ("0.8").
type Contact struct {
	URI      string
	Priority string
}

// Note is a human-readable note, in a language.
type Note struct {
	Lang string
	Text string
}

// The wire forms. Decoding matches the PIDF namespace exactly; encoding
// writes it once, on the root.
type pidfIn struct {
	XMLName xml.Name  `xml:"urn:ietf:params:xml:ns:pidf presence"`
	Entity  string    `xml:"entity,attr"`
	Tuples  []tupleIn `xml:"urn:ietf:params:xml:ns:pidf tuple"`
	Notes   []noteXML `xml:"urn:ietf:params:xml:ns:pidf note"`
	Any     []Node    `xml:",any"`
}

type tupleIn struct {
	ID     string `xml:"id,attr"`
	Status *struct {
		Basic string `xml:"urn:ietf:params:xml:ns:pidf basic"`
		Any   []Node `xml:",any"`
	} `xml:"urn:ietf:params:xml:ns:pidf status"`
	Contact *struct {
		Priority string `xml:"priority,attr"`
		URI      string `xml:",chardata"`
	} `xml:"urn:ietf:params:xml:ns:pidf contact"`
	Notes     []noteXML `xml:"urn:ietf:params:xml:ns:pidf note"`
	Timestamp string    `xml:"urn:ietf:params:xml:ns:pidf timestamp"`
	Any       []Node    `xml:",any"`
}

type noteXML struct {
	Lang string `xml:"http://www.w3.org/XML/1998/namespace lang,attr,omitempty"`
	Text string `xml:",chardata"`
}

type pidfOut struct {
	XMLName xml.Name   `xml:"presence"`
	Xmlns   string     `xml:"xmlns,attr"`
	Entity  string     `xml:"entity,attr"`
	Tuples  []tupleOut `xml:"tuple"`
	Notes   []noteXML  `xml:"note"`
	Any     []Node
}

type tupleOut struct {
	ID     string `xml:"id,attr"`
	Status struct {
		Basic string `xml:"basic,omitempty"`
		Any   []Node
	} `xml:"status"`
	Any     []Node
	Contact *struct {
		Priority string `xml:"priority,attr,omitempty"`
		URI      string `xml:",chardata"`
	} `xml:"contact,omitempty"`
	Notes     []noteXML `xml:"note"`
	Timestamp string    `xml:"timestamp,omitempty"`
}

// ParsePIDF reads a PIDF document (RFC 3863): the root must be presence in
// the PIDF namespace with an entity, every tuple needs an id and a status,
// basic is open or closed; at most MaxDocument bytes, 32 tuples, 16 notes
// per element, 16 levels deep.
func ParsePIDF(doc []byte) (*Presence, error) {
	if err := screen(doc); err != nil {
		return nil, err
	}
	var in pidfIn
	if err := xml.NewDecoder(bytes.NewReader(doc)).Decode(&in); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDocument, err)
	}
	if in.Entity == "" {
		return nil, fmt.Errorf("%w: presence without entity", ErrBadDocument)
	}
	if len(in.Tuples) > maxTuples || len(in.Notes) > maxNotes {
		return nil, fmt.Errorf("%w: %d tuples, %d notes", ErrBadDocument, len(in.Tuples), len(in.Notes))
	}
	p := &Presence{Entity: in.Entity, Notes: notes(in.Notes), Extensions: nodes(in.Any)}
	ids := map[string]bool{}
	for _, t := range in.Tuples {
		if t.ID == "" || ids[t.ID] {
			return nil, fmt.Errorf("%w: a tuple without id, or two with id %q", ErrBadDocument, t.ID)
		}
		ids[t.ID] = true
		if t.Status == nil {
			return nil, fmt.Errorf("%w: tuple %q without status", ErrBadDocument, t.ID)
		}
		basic := strings.TrimSpace(t.Status.Basic)
		if basic != "" && basic != Open && basic != Closed {
			return nil, fmt.Errorf("%w: tuple %q: basic %q", ErrBadDocument, t.ID, basic)
		}
		if len(t.Notes) > maxNotes {
			return nil, fmt.Errorf("%w: tuple %q: %d notes", ErrBadDocument, t.ID, len(t.Notes))
		}
		tu := Tuple{ID: t.ID, Basic: basic, Status: nodes(t.Status.Any), Extensions: nodes(t.Any),
			Notes: notes(t.Notes), Timestamp: strings.TrimSpace(t.Timestamp)}
		if t.Contact != nil {
			tu.Contact = &Contact{URI: strings.TrimSpace(t.Contact.URI), Priority: t.Contact.Priority}
		}
		p.Tuples = append(p.Tuples, tu)
	}
	return p, nil
}

func notes(in []noteXML) []Note {
	var out []Note
	for _, n := range in {
		out = append(out, Note{Lang: n.Lang, Text: n.Text})
	}
	return out
}

func nodes(in []Node) []Node {
	for i := range in {
		in[i].clean()
	}
	return in
}

// Marshal writes p as an application/pidf+xml body.
func (p *Presence) Marshal() ([]byte, error) {
	out := pidfOut{Xmlns: NSPIDF, Entity: p.Entity, Any: p.Extensions}
	for _, n := range p.Notes {
		out.Notes = append(out.Notes, noteXML(n))
	}
	for _, t := range p.Tuples {
		to := tupleOut{ID: t.ID, Any: t.Extensions, Timestamp: t.Timestamp}
		to.Status.Basic, to.Status.Any = t.Basic, t.Status
		if t.Contact != nil {
			to.Contact = &struct {
				Priority string `xml:"priority,attr,omitempty"`
				URI      string `xml:",chardata"`
			}{Priority: t.Contact.Priority, URI: t.Contact.URI}
		}
		for _, n := range t.Notes {
			to.Notes = append(to.Notes, noteXML(n))
		}
		out.Tuples = append(out.Tuples, to)
	}
	return marshal(out)
}
