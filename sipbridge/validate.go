package sipbridge

import (
	"bytes"
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

// Positions in knownNames.
const (
	hVia = iota
	hTo
	hFrom
	hCallID
	hCSeq
	hMaxForwards
	hContentLength
	hContentType
	hExpires
	hDate
	hContact
)

// headerIndex counts the headers validation looks at, by position in knownNames, and keeps
// the first of each. It lives on the stack: validation allocates nothing for a valid
// request.
type headerIndex struct {
	n     [len(knownNames)]int
	first [len(knownNames)]sip.Header
}

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
		if i := headerKind(h); i >= 0 {
			if idx.n[i] == 0 {
				idx.first[i] = h
			}
			idx.n[i]++
		}
	}
}

// headerKind is canonicalIndex of h's name, typed headers first (no string compare).
func headerKind(h sip.Header) int {
	switch h.(type) {
	case *sip.ViaHeader:
		return hVia
	case *sip.ToHeader:
		return hTo
	case *sip.FromHeader:
		return hFrom
	case *sip.CallIDHeader:
		return hCallID
	case *sip.CSeqHeader:
		return hCSeq
	case *sip.MaxForwardsHeader:
		return hMaxForwards
	case *sip.ContentLengthHeader:
		return hContentLength
	case *sip.ContentTypeHeader:
		return hContentType
	case *sip.ContactHeader:
		return hContact
	}
	return canonicalIndex(h.Name())
}

// count returns how many headers named name (canonical long form) there are.
func (idx *headerIndex) count(name string) int { return idx.n[knownIndex(name)] }

// scanHeader reports whether h, as written, has balanced quotes and, with brackets,
// as many '<' as '>' (written into a pooled buffer: no string is built).
func scanHeader(h sip.Header, brackets bool) bool {
	w := getBuf()
	writeHeader(w, h)
	b := w.Bytes()
	ok := quotesBalancedBytes(b) && (!brackets || bytes.Count(b, []byte("<")) == bytes.Count(b, []byte(">")))
	putBuf(w)
	return ok
}

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
	if strings.IndexByte(req.Recipient.User, '%') >= 0 {
		if _, err := url.PathUnescape(req.Recipient.User); err != nil {
			return 400, "Bad Request: invalid escape in Request-URI"
		}
	}
	for _, k := range [...]int{hTo, hFrom, hCallID, hCSeq} {
		switch idx.n[k] {
		case 0:
			return 400, "Bad Request: missing " + knownNames[k] + " header"
		case 1:
		default:
			return 400, "Bad Request: duplicate " + knownNames[k] + " header"
		}
	}
	for _, k := range [...]int{hMaxForwards, hContentLength, hContentType, hExpires} {
		if idx.n[k] > 1 {
			return 400, "Bad Request: duplicate " + knownNames[k] + " header"
		}
	}
	if idx.n[hVia] == 0 || req.Via() == nil {
		return 400, "Bad Request: missing Via header"
	}
	if req.To() == nil || req.From() == nil || req.CallID() == nil || strings.TrimSpace(req.CallID().Value()) == "" {
		return 400, "Bad Request: malformed To, From or Call-ID"
	}
	for _, u := range [...]*sip.Uri{&req.To().Address, &req.From().Address} {
		if u.Scheme != "" && !validToken(u.Scheme) {
			return 400, "Bad Request: malformed URI in To or From"
		}
	}
	if !scanHeader(req.To(), false) || !scanHeader(req.From(), false) {
		return 400, "Bad Request: unbalanced quotes"
	}
	// CSeq: "number METHOD", number < 2**31, method equal to the request's.
	var seq uint64
	var method string
	switch cs := idx.first[hCSeq].(type) {
	case *sip.CSeqHeader:
		seq, method = uint64(cs.SeqNo), string(cs.MethodName)
		if method == "" || strings.ContainsAny(method, " \t") {
			return 400, "Bad Request: malformed CSeq"
		}
	default:
		f := strings.Fields(cs.Value())
		if len(f) != 2 {
			return 400, "Bad Request: malformed CSeq"
		}
		n, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return 400, "Bad Request: CSeq number out of range"
		}
		seq, method = n, f[1]
	}
	if seq > 1<<31-1 {
		return 400, "Bad Request: CSeq number out of range"
	}
	if !strings.EqualFold(method, string(req.Method)) { // sipgo upper-cases the Request-Line's method
		return 400, "Bad Request: CSeq method does not match the request method"
	}
	switch mf := idx.first[hMaxForwards].(type) {
	case nil:
	case *sip.MaxForwardsHeader:
		if mf.Val() > 255 {
			return 400, "Bad Request: invalid Max-Forwards"
		}
	default:
		if n, err := strconv.ParseUint(strings.TrimSpace(mf.Value()), 10, 8); err != nil || n > 255 {
			return 400, "Bad Request: invalid Max-Forwards"
		}
	}
	switch cl := idx.first[hContentLength].(type) {
	case nil:
	case *sip.ContentLengthHeader:
		if uint64(*cl) > 1<<31-1 {
			return 400, "Bad Request: invalid Content-Length"
		}
		if int(*cl) != len(req.Body()) {
			return 400, "Bad Request: Content-Length does not match the body"
		}
	default:
		n, err := strconv.ParseUint(strings.TrimSpace(cl.Value()), 10, 31)
		if err != nil {
			return 400, "Bad Request: invalid Content-Length"
		}
		if int(n) != len(req.Body()) {
			return 400, "Bad Request: Content-Length does not match the body"
		}
	}
	if h := idx.first[hExpires]; h != nil {
		if _, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32); err != nil {
			return 400, "Bad Request: invalid Expires"
		}
	}
	if idx.n[hDate] > 0 || idx.n[hContact] > 0 {
		for _, h := range req.Headers() {
			switch headerKind(h) {
			case hDate:
				if !strings.HasSuffix(strings.TrimSpace(h.Value()), "GMT") {
					return 400, "Bad Request: Date must be in GMT"
				}
			case hContact:
				if !scanHeader(h, true) {
					return 400, "Bad Request: malformed Contact"
				}
			}
		}
	}
	if len(req.Body()) > 0 && idx.n[hContentType] == 0 {
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
func quotesBalanced(s string) bool { return quotesBalancedBytes([]byte(s)) }

func quotesBalancedBytes(s []byte) bool {
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
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), "Proxy-Require") {
			continue
		}
		for _, t := range strings.Split(h.Value(), ",") {
			if t = strings.TrimSpace(t); t != "" {
				tags = append(tags, t)
			}
		}
	}
	return strings.Join(tags, ", ")
}
