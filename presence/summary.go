package presence

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Message summary (RFC 3842): application/simple-message-summary.
const (
	ContentTypeSummary = "application/simple-message-summary"
	maxSummary         = 4 << 10
)

// Message context classes (RFC 3458) as they name summary lines.
const (
	VoiceMessage      = "Voice-Message"
	FaxMessage        = "Fax-Message"
	PagerMessage      = "Pager-Message"
	MultimediaMessage = "Multimedia-Message"
	TextMessage       = "Text-Message"
	NoneMessage       = "None"
)

var summaryClasses = []string{VoiceMessage, FaxMessage, PagerMessage, MultimediaMessage, TextMessage, NoneMessage}

// Summary is a message-summary body: whether messages wait, for which
// account, and counts per message context class.
type Summary struct {
	Waiting bool
	Account string // Message-Account, "" if absent
	Counts  []ClassCount
}

// ClassCount is one summary line: new/old (new-urgent/old-urgent).
type ClassCount struct {
	Class                string // e.g. TextMessage
	New, Old             uint32
	Urgent               bool // the urgent counts are present
	NewUrgent, OldUrgent uint32
}

// Marshal writes s as an application/simple-message-summary body.
func (s *Summary) Marshal() []byte {
	var b strings.Builder
	if s.Waiting {
		b.WriteString("Messages-Waiting: yes\r\n")
	} else {
		b.WriteString("Messages-Waiting: no\r\n")
	}
	if s.Account != "" {
		b.WriteString("Message-Account: " + s.Account + "\r\n")
	}
	for _, c := range s.Counts {
		fmt.Fprintf(&b, "%s: %d/%d", c.Class, c.New, c.Old)
		if c.Urgent {
			fmt.Fprintf(&b, " (%d/%d)", c.NewUrgent, c.OldUrgent)
		}
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}

// ParseSummary reads a message-summary body (RFC 3842 §5.2): the status
// line first, an optional account, summary lines of known classes; message
// headers after an empty line are ignored.
func ParseSummary(body []byte) (*Summary, error) {
	if len(body) > maxSummary {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadDocument, len(body))
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	s := &Summary{}
	first := true
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			if first {
				return nil, fmt.Errorf("%w: no status line", ErrBadDocument)
			}
			break // optional message headers follow
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %q", ErrBadDocument, line)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if first {
			if !strings.EqualFold(name, "Messages-Waiting") {
				return nil, fmt.Errorf("%w: the first line is %q, not Messages-Waiting", ErrBadDocument, name)
			}
			switch strings.ToLower(value) {
			case "yes":
				s.Waiting = true
			case "no":
			default:
				return nil, fmt.Errorf("%w: Messages-Waiting: %q", ErrBadDocument, value)
			}
			first = false
			continue
		}
		if strings.EqualFold(name, "Message-Account") {
			s.Account = value
			continue
		}
		class := ""
		for _, c := range summaryClasses {
			if strings.EqualFold(name, c) {
				class = c
			}
		}
		if class == "" {
			continue // an extension line
		}
		c, err := parseCount(class, value)
		if err != nil {
			return nil, err
		}
		s.Counts = append(s.Counts, c)
	}
	if first {
		return nil, fmt.Errorf("%w: empty", ErrBadDocument)
	}
	return s, nil
}

func parseCount(class, v string) (ClassCount, error) {
	c := ClassCount{Class: class}
	bad := fmt.Errorf("%w: %s: %q", ErrBadDocument, class, v)
	counts, urgent, hasUrgent := strings.Cut(v, "(")
	n, o, ok := strings.Cut(strings.TrimSpace(counts), "/")
	if !ok {
		return c, bad
	}
	var err error
	if c.New, err = count(n); err != nil {
		return c, bad
	}
	if c.Old, err = count(o); err != nil {
		return c, bad
	}
	if hasUrgent {
		u, rest, ok := strings.Cut(urgent, ")")
		nu, ou, ok2 := strings.Cut(u, "/")
		if !ok || !ok2 || strings.TrimSpace(rest) != "" {
			return c, bad
		}
		c.Urgent = true
		if c.NewUrgent, err = count(nu); err != nil {
			return c, bad
		}
		if c.OldUrgent, err = count(ou); err != nil {
			return c, bad
		}
	}
	return c, nil
}

func count(s string) (uint32, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	return uint32(v), err
}
