package presence

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"
)

// Registration event package (RFC 3680): application/reginfo+xml.
const (
	NSRegInfo          = "urn:ietf:params:xml:ns:reginfo"
	NSGRUUInfo         = "urn:ietf:params:xml:ns:gruuinfo" // RFC 5628
	ContentTypeRegInfo = "application/reginfo+xml"
	maxRegContacts     = 64
)

// RegInfo is a reginfo document.
type RegInfo struct {
	Version       uint64
	State         string // "full" or "partial"
	Registrations []Registration
}

// Registration is the state of one AOR.
type Registration struct {
	AOR      string
	ID       string
	State    string // "init", "active" or "terminated"
	Contacts []RegContact
}

// RegContact is one contact of a registration.
type RegContact struct {
	ID          string
	State       string // "active" or "terminated"
	Event       string // registered, created, refreshed, shortened, expired, deactivated, probation, unregistered, rejected
	URI         string
	DisplayName string
	Expires     *uint64 // seconds left, when known
	Duration    *uint64 // seconds registered, when known
	Q           string
	CallID      string
	CSeq        *uint64
	Params      []Param // unknown-param elements: +sip.instance, reg-id, …
	PubGRUU     string  // RFC 5628 pub-gruu
}

// Param is an unknown-param of a contact (a Contact header parameter the
// registrar kept), e.g. +sip.instance.
type Param struct {
	Name  string `xml:"name,attr"`
	Value string `xml:",chardata"`
}

type gruuXML struct {
	URI string `xml:"uri,attr"`
}

type regInfoIn struct {
	XMLName       xml.Name `xml:"urn:ietf:params:xml:ns:reginfo reginfo"`
	Version       string   `xml:"version,attr"`
	State         string   `xml:"state,attr"`
	Registrations []struct {
		AOR      string `xml:"aor,attr"`
		ID       string `xml:"id,attr"`
		State    string `xml:"state,attr"`
		Contacts []struct {
			ID          string   `xml:"id,attr"`
			State       string   `xml:"state,attr"`
			Event       string   `xml:"event,attr"`
			Expires     string   `xml:"expires,attr"`
			Duration    string   `xml:"duration-registered,attr"`
			Q           string   `xml:"q,attr"`
			CallID      string   `xml:"callid,attr"`
			CSeq        string   `xml:"cseq,attr"`
			URI         string   `xml:"urn:ietf:params:xml:ns:reginfo uri"`
			DisplayName string   `xml:"urn:ietf:params:xml:ns:reginfo display-name"`
			Params      []Param  `xml:"urn:ietf:params:xml:ns:reginfo unknown-param"`
			PubGRUU     *gruuXML `xml:"urn:ietf:params:xml:ns:gruuinfo pub-gruu"`
		} `xml:"urn:ietf:params:xml:ns:reginfo contact"`
	} `xml:"urn:ietf:params:xml:ns:reginfo registration"`
}

type regContactOut struct {
	ID          string   `xml:"id,attr"`
	State       string   `xml:"state,attr"`
	Event       string   `xml:"event,attr"`
	Expires     *uint64  `xml:"expires,attr,omitempty"`
	Duration    *uint64  `xml:"duration-registered,attr,omitempty"`
	Q           string   `xml:"q,attr,omitempty"`
	CallID      string   `xml:"callid,attr,omitempty"`
	CSeq        *uint64  `xml:"cseq,attr,omitempty"`
	URI         string   `xml:"uri"`
	DisplayName string   `xml:"display-name,omitempty"`
	Params      []Param  `xml:"unknown-param"`
	PubGRUU     *gruuOut `xml:",omitempty"`
}

type gruuOut struct {
	XMLName xml.Name `xml:"urn:ietf:params:xml:ns:gruuinfo pub-gruu"`
	URI     string   `xml:"uri,attr"`
}

type regInfoOut struct {
	XMLName       xml.Name `xml:"reginfo"`
	Xmlns         string   `xml:"xmlns,attr"`
	Version       uint64   `xml:"version,attr"`
	State         string   `xml:"state,attr"`
	Registrations []struct {
		AOR      string          `xml:"aor,attr"`
		ID       string          `xml:"id,attr"`
		State    string          `xml:"state,attr"`
		Contacts []regContactOut `xml:"contact"`
	} `xml:"registration"`
}

var (
	regStates     = map[string]bool{"init": true, "active": true, "terminated": true}
	contactStates = map[string]bool{"active": true, "terminated": true}
	contactEvents = map[string]bool{"registered": true, "created": true, "refreshed": true, "shortened": true,
		"expired": true, "deactivated": true, "probation": true, "unregistered": true, "rejected": true}
)

func optUint(s string) (*uint64, error) {
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// ParseRegInfo reads a reginfo document (RFC 3680), checking the states and
// events against the RFC's enumerations.
func ParseRegInfo(doc []byte) (*RegInfo, error) {
	if err := screen(doc); err != nil {
		return nil, err
	}
	var in regInfoIn
	if err := xml.NewDecoder(bytes.NewReader(doc)).Decode(&in); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDocument, err)
	}
	v, err := strconv.ParseUint(in.Version, 10, 64)
	if err != nil || (in.State != "full" && in.State != "partial") {
		return nil, fmt.Errorf("%w: reginfo version %q, state %q", ErrBadDocument, in.Version, in.State)
	}
	ri := &RegInfo{Version: v, State: in.State}
	for _, r := range in.Registrations {
		if r.AOR == "" || r.ID == "" || !regStates[r.State] || len(r.Contacts) > maxRegContacts {
			return nil, fmt.Errorf("%w: registration %q of %q, state %q", ErrBadDocument, r.ID, r.AOR, r.State)
		}
		reg := Registration{AOR: r.AOR, ID: r.ID, State: r.State}
		for _, c := range r.Contacts {
			if c.ID == "" || !contactStates[c.State] || !contactEvents[c.Event] || c.URI == "" {
				return nil, fmt.Errorf("%w: contact %q: state %q, event %q", ErrBadDocument, c.ID, c.State, c.Event)
			}
			rc := RegContact{ID: c.ID, State: c.State, Event: c.Event, URI: c.URI, DisplayName: c.DisplayName,
				Q: c.Q, CallID: c.CallID, Params: c.Params}
			var e1, e2, e3 error
			rc.Expires, e1 = optUint(c.Expires)
			rc.Duration, e2 = optUint(c.Duration)
			rc.CSeq, e3 = optUint(c.CSeq)
			if e1 != nil || e2 != nil || e3 != nil {
				return nil, fmt.Errorf("%w: contact %q: a number attribute", ErrBadDocument, c.ID)
			}
			if c.PubGRUU != nil {
				rc.PubGRUU = c.PubGRUU.URI
			}
			reg.Contacts = append(reg.Contacts, rc)
		}
		ri.Registrations = append(ri.Registrations, reg)
	}
	return ri, nil
}

// Marshal writes ri as an application/reginfo+xml body.
func (ri *RegInfo) Marshal() ([]byte, error) {
	out := regInfoOut{Xmlns: NSRegInfo, Version: ri.Version, State: ri.State}
	for _, r := range ri.Registrations {
		ro := struct {
			AOR      string          `xml:"aor,attr"`
			ID       string          `xml:"id,attr"`
			State    string          `xml:"state,attr"`
			Contacts []regContactOut `xml:"contact"`
		}{AOR: r.AOR, ID: r.ID, State: r.State}
		for _, c := range r.Contacts {
			co := regContactOut{ID: c.ID, State: c.State, Event: c.Event, Expires: c.Expires, Duration: c.Duration,
				Q: c.Q, CallID: c.CallID, CSeq: c.CSeq, URI: c.URI, DisplayName: c.DisplayName, Params: c.Params}
			if c.PubGRUU != "" {
				co.PubGRUU = &gruuOut{URI: c.PubGRUU}
			}
			ro.Contacts = append(ro.Contacts, co)
		}
		out.Registrations = append(out.Registrations, ro)
	}
	return marshal(out)
}
