package presence

import (
	"fmt"
	"mime"
	"strings"
)

// Describe sums up a NOTIFY body of the presence, reg or message-summary package in
// one line for people, e.g. "open (2 tuples)", "2 active contacts",
// "Messages-Waiting: yes, Text-Message 2/0". A body it cannot read is described by
// its type and size.
func Describe(contentType string, body []byte) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if len(body) == 0 {
		return "no body"
	}
	if err == nil {
		switch mt {
		case ContentTypePIDF:
			if p, err := ParsePIDF(body); err == nil {
				return describePresence(p)
			}
		case ContentTypeRegInfo:
			if r, err := ParseRegInfo(body); err == nil {
				return describeRegInfo(r)
			}
		case ContentTypeSummary:
			if s, err := ParseSummary(body); err == nil {
				return describeSummary(s)
			}
		}
	}
	return fmt.Sprintf("%d bytes of %s", len(body), contentType)
}

func describePresence(p *Presence) string {
	basic := Closed
	for _, t := range p.Tuples {
		if t.Basic == Open {
			basic = Open
		}
	}
	s := fmt.Sprintf("%s (%d tuples)", basic, len(p.Tuples))
	if len(p.Tuples) == 1 {
		s = fmt.Sprintf("%s (1 tuple)", basic)
	}
	for _, n := range p.Notes {
		s += fmt.Sprintf(" %q", n.Text)
	}
	for _, t := range p.Tuples {
		for _, n := range t.Notes {
			s += fmt.Sprintf(" %q", n.Text)
		}
	}
	return s
}

func describeRegInfo(r *RegInfo) string {
	active := 0
	for _, reg := range r.Registrations {
		for _, c := range reg.Contacts {
			if c.State == "active" {
				active++
			}
		}
	}
	if active == 1 {
		return "1 active contact"
	}
	return fmt.Sprintf("%d active contacts", active)
}

func describeSummary(s *Summary) string {
	parts := []string{"Messages-Waiting: no"}
	if s.Waiting {
		parts[0] = "Messages-Waiting: yes"
	}
	for _, c := range s.Counts {
		parts = append(parts, fmt.Sprintf("%s %d/%d", c.Class, c.New, c.Old))
	}
	return strings.Join(parts, ", ")
}
