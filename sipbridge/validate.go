package sipbridge

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

var compactNames = [26]string{
	'i' - 'a': "call-id", 'f' - 'a': "from", 't' - 'a': "to", 'v' - 'a': "via", 'l' - 'a': "content-length",
	'm' - 'a': "contact", 'c' - 'a': "content-type", 'k' - 'a': "supported", 's' - 'a': "subject", 'e' - 'a': "content-encoding",
}

var knownNames = []string{"via", "to", "from", "call-id", "cseq", "max-forwards", "content-length",
	"content-type", "expires", "date", "contact", "supported", "subject", "content-encoding"}

// canonicalName maps a header name (any case, compact forms included) to the lower-case
// long form for the headers validation looks at, and "" for the others.
func canonicalName(n string) string {
	if len(n) == 1 {
		c := n[0] | 0x20
		if c >= 'a' && c <= 'z' {
			return compactNames[c-'a']
		}
		return ""
	}
	for _, k := range knownNames {
		if len(k) == len(n) && strings.EqualFold(k, n) {
			return k
		}
	}
	return ""
}

// headerIndex holds the raw values of the headers validation looks at, by canonical name.
type headerIndex map[string][]string

func indexHeaders(m sip.Message) headerIndex {
	idx := make(headerIndex, 12)
	for _, h := range headersOf(m) {
		if n := canonicalName(h.Name()); n != "" {
			idx[n] = append(idx[n], h.Value())
		}
	}
	return idx
}

// rawValues returns the header values named name (long or compact form), in order.
func rawValues(m sip.Message, name string) []string { return indexHeaders(m)[name] }

// validateRequest checks what sipgo's parser lets through (RFC 4475 §3.1.2): it returns 0
// for an acceptable request, or the status and reason phrase to answer with.
func validateRequest(req *sip.Request) (int, string) {
	idx := indexHeaders(req)
	rawValues := func(_ *sip.Request, name string) []string { return idx[name] }
	if req.SipVersion != "SIP/2.0" {
		return 505, "Version Not Supported"
	}
	if !validToken(string(req.Method)) {
		return 400, "Bad Request: invalid method"
	}
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips", "tel":
	default:
		return 416, "Unsupported URI Scheme"
	}
	if req.Recipient.Host == "" && req.Recipient.Scheme != "tel" {
		return 400, "Bad Request: Request-URI has no host"
	}
	if strings.ContainsAny(req.Recipient.Host, " \t<>\"") || strings.ContainsAny(req.Recipient.User, " \t<>\"") {
		return 400, "Bad Request: invalid Request-URI"
	}
	if _, err := url.PathUnescape(req.Recipient.User); err != nil {
		return 400, "Bad Request: invalid escape in Request-URI"
	}
	for _, n := range []string{"to", "from", "call-id", "cseq"} {
		switch len(rawValues(req, n)) {
		case 0:
			return 400, "Bad Request: missing " + n + " header"
		case 1:
		default:
			return 400, "Bad Request: duplicate " + n + " header"
		}
	}
	for _, n := range []string{"max-forwards", "content-length", "content-type", "expires"} {
		if len(rawValues(req, n)) > 1 {
			return 400, "Bad Request: duplicate " + n + " header"
		}
	}
	if len(rawValues(req, "via")) == 0 || req.Via() == nil {
		return 400, "Bad Request: missing Via header"
	}
	if req.To() == nil || req.From() == nil || req.CallID() == nil || strings.TrimSpace(req.CallID().Value()) == "" {
		return 400, "Bad Request: malformed To, From or Call-ID"
	}
	for _, u := range []*sip.Uri{&req.To().Address, &req.From().Address} {
		if u.Scheme != "" && !validToken(u.Scheme) {
			return 400, "Bad Request: malformed URI in To or From"
		}
	}
	if strings.Count(req.To().Value(), "\"")%2 != 0 || strings.Count(req.From().Value(), "\"")%2 != 0 {
		return 400, "Bad Request: unbalanced quotes"
	}
	// CSeq: "number METHOD", number < 2**31, method equal to the request's.
	cs := strings.Fields(rawValues(req, "cseq")[0])
	if len(cs) != 2 {
		return 400, "Bad Request: malformed CSeq"
	}
	if n, err := strconv.ParseUint(cs[0], 10, 32); err != nil || n > 1<<31-1 {
		return 400, "Bad Request: CSeq number out of range"
	}
	if cs[1] != string(req.Method) {
		return 400, "Bad Request: CSeq method does not match the request method"
	}
	if v := rawValues(req, "max-forwards"); len(v) == 1 {
		if n, err := strconv.ParseUint(strings.TrimSpace(v[0]), 10, 8); err != nil || n > 255 {
			return 400, "Bad Request: invalid Max-Forwards"
		}
	}
	if v := rawValues(req, "content-length"); len(v) == 1 {
		n, err := strconv.ParseUint(strings.TrimSpace(v[0]), 10, 31)
		if err != nil {
			return 400, "Bad Request: invalid Content-Length"
		}
		if int(n) != len(req.Body()) {
			return 400, "Bad Request: Content-Length does not match the body"
		}
	}
	if v := rawValues(req, "expires"); len(v) == 1 {
		if _, err := strconv.ParseUint(strings.TrimSpace(v[0]), 10, 32); err != nil {
			return 400, "Bad Request: invalid Expires"
		}
	}
	for _, v := range rawValues(req, "date") {
		if !strings.HasSuffix(strings.TrimSpace(v), "GMT") {
			return 400, "Bad Request: Date must be in GMT"
		}
	}
	for _, v := range rawValues(req, "contact") {
		if strings.Count(v, "\"")%2 != 0 || strings.Count(v, "<") != strings.Count(v, ">") {
			return 400, "Bad Request: malformed Contact"
		}
	}
	if len(req.Body()) > 0 && len(rawValues(req, "content-type")) == 0 {
		return 400, "Bad Request: body without Content-Type"
	}
	return 0, ""
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-.!%*_+`'~", c)) {
			return false
		}
	}
	return true
}
