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

var knownNames = [...]string{"via", "to", "from", "call-id", "cseq", "max-forwards", "content-length",
	"content-type", "expires", "date", "contact", "supported", "subject", "content-encoding"}

// canonicalName maps a header name (any case, compact forms included) to the lower-case
// long form for the headers validation looks at, and "" for the others.
func canonicalName(n string) string {
	if i := canonicalIndex(n); i >= 0 {
		return knownNames[i]
	}
	return ""
}

// canonicalIndex is canonicalName as a position in knownNames, -1 for other headers.
func canonicalIndex(n string) int {
	if len(n) == 1 {
		c := n[0] | 0x20
		if c >= 'a' && c <= 'z' && compactNames[c-'a'] != "" {
			return knownIndex(compactNames[c-'a'])
		}
		return -1
	}
	for i, k := range knownNames {
		if len(k) == len(n) && strings.EqualFold(k, n) {
			return i
		}
	}
	return -1
}

// headerIndex counts the headers validation looks at, by position in knownNames, and keeps
// the raw values of those whose text it checks. It lives on the stack: validation runs
// twice for every request a UA sends, so it allocates only the values it needs.
type headerIndex struct {
	n [len(knownNames)]int
	v [len(knownNames)][]string
}

// rawNeeded marks the headers whose raw values validation reads.
var rawNeeded = func() (r [len(knownNames)]bool) {
	for _, n := range []string{"cseq", "max-forwards", "content-length", "expires", "date", "contact"} {
		r[knownIndex(n)] = true
	}
	return r
}()

func knownIndex(n string) int {
	for i, k := range knownNames {
		if k == n {
			return i
		}
	}
	panic("sipbridge: unknown header " + n)
}

func (idx *headerIndex) fill(m sip.Message) {
	for _, h := range headersOf(m) {
		if i := canonicalIndex(h.Name()); i >= 0 {
			idx.n[i]++
			if rawNeeded[i] {
				idx.v[i] = append(idx.v[i], headerValue(h))
			}
		}
	}
}

// headerValue is h.Value() without sipgo's fmt.Sprintf for CSeq (3 % of a node's CPU
// under load, on every request, twice).
func headerValue(h sip.Header) string {
	if cs, ok := h.(*sip.CSeqHeader); ok {
		return strconv.FormatUint(uint64(cs.SeqNo), 10) + " " + string(cs.MethodName)
	}
	return h.Value()
}

// count returns how many headers named name (canonical long form) there are.
func (idx *headerIndex) count(name string) int { return idx.n[knownIndex(name)] }

// values returns the raw values of name, which must be one of rawNeeded.
func (idx *headerIndex) values(name string) []string { return idx.v[knownIndex(name)] }

// rawValues returns the header values named name (long or compact form), in order.
func rawValues(m sip.Message, name string) []string {
	var out []string
	for _, h := range headersOf(m) {
		if canonicalName(h.Name()) == name {
			out = append(out, h.Value())
		}
	}
	return out
}

// validateRequest checks what sipgo's parser lets through (RFC 4475 §3.1.2): it returns 0
// for an acceptable request, or the status and reason phrase to answer with.
func validateRequest(req *sip.Request) (int, string) {
	var idx headerIndex
	idx.fill(req)
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
		switch idx.count(n) {
		case 0:
			return 400, "Bad Request: missing " + n + " header"
		case 1:
		default:
			return 400, "Bad Request: duplicate " + n + " header"
		}
	}
	for _, n := range []string{"max-forwards", "content-length", "content-type", "expires"} {
		if idx.count(n) > 1 {
			return 400, "Bad Request: duplicate " + n + " header"
		}
	}
	if idx.count("via") == 0 || req.Via() == nil {
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
	if !quotesBalanced(req.To().Value()) || !quotesBalanced(req.From().Value()) {
		return 400, "Bad Request: unbalanced quotes"
	}
	// CSeq: "number METHOD", number < 2**31, method equal to the request's.
	cs := strings.Fields(idx.values("cseq")[0])
	if len(cs) != 2 {
		return 400, "Bad Request: malformed CSeq"
	}
	if n, err := strconv.ParseUint(cs[0], 10, 32); err != nil || n > 1<<31-1 {
		return 400, "Bad Request: CSeq number out of range"
	}
	if !strings.EqualFold(cs[1], string(req.Method)) { // sipgo upper-cases the Request-Line's method
		return 400, "Bad Request: CSeq method does not match the request method"
	}
	if v := idx.values("max-forwards"); len(v) == 1 {
		if n, err := strconv.ParseUint(strings.TrimSpace(v[0]), 10, 8); err != nil || n > 255 {
			return 400, "Bad Request: invalid Max-Forwards"
		}
	}
	if v := idx.values("content-length"); len(v) == 1 {
		n, err := strconv.ParseUint(strings.TrimSpace(v[0]), 10, 31)
		if err != nil {
			return 400, "Bad Request: invalid Content-Length"
		}
		if int(n) != len(req.Body()) {
			return 400, "Bad Request: Content-Length does not match the body"
		}
	}
	if v := idx.values("expires"); len(v) == 1 {
		if _, err := strconv.ParseUint(strings.TrimSpace(v[0]), 10, 32); err != nil {
			return 400, "Bad Request: invalid Expires"
		}
	}
	for _, v := range idx.values("date") {
		if !strings.HasSuffix(strings.TrimSpace(v), "GMT") {
			return 400, "Bad Request: Date must be in GMT"
		}
	}
	for _, v := range idx.values("contact") {
		if !quotesBalanced(v) || strings.Count(v, "<") != strings.Count(v, ">") {
			return 400, "Bad Request: malformed Contact"
		}
	}
	if len(req.Body()) > 0 && idx.count("content-type") == 0 {
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

// quotesBalanced reports whether every quoted string in s is closed; inside one, a backslash
// escapes the next character (RFC 3261 quoted-pair), so "a \\\"" holds one quoted string.
func quotesBalanced(s string) bool {
	in := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			in = !in
		case c == '\\' && in:
			i++
		}
	}
	return !in
}

// proxyRequireTags returns the option tags of req's Proxy-Require headers, which this proxy
// supports none of (RFC 3261 §16.3 step 6: 420 Bad Extension, listing them in Unsupported).
func proxyRequireTags(req *sip.Request) string {
	var tags []string
	for _, h := range req.GetHeaders("Proxy-Require") {
		for _, t := range strings.Split(h.Value(), ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
	}
	return strings.Join(tags, ", ")
}
