package sipbridge

import (
	"bytes"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Answering requests that sipgo cannot parse (RFC 4475 §3.1.2).
//
// sipgo's parser refuses a request whose Request-Line or one of whose typed headers (Via,
// From, To, CSeq, Content-Length, …) it cannot read, and sipgo then drops it without an
// answer. RFC 3261 §8.2 wants a 400 where a response can be built, and RFC 4475's invalid
// messages expect one. malformedAnswer builds it from the message's raw header lines:
// sipgo parses the header block again with no header parsers (every header a name and its
// raw text) behind a placeholder Request-Line, and the response copies Via, From, To,
// Call-ID and CSeq as they came. Nothing is built without a Via, and nothing for a response.

// rawParser parses every header as a generic one (name and raw value).
var rawParser = sip.NewParser(sip.WithHeadersParsers(map[string]sip.HeaderParser{}))

// malformedAnswer returns the response to data, a request sipgo could not parse, with the
// status and reason chosen from its Request-Line; nil when no response can be built.
func malformedAnswer(data []byte) []byte {
	if bytes.HasPrefix(data, []byte("SIP/")) {
		return nil // a response: never answered
	}
	head := data
	if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
		head = head[:i+2]
	}
	line, rest, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok {
		return nil
	}
	code, reason := requestLineVerdict(string(line))
	msg, _, err := rawParser.ParseHeaders(withoutLength(append([]byte("OPTIONS sip:invalid.invalid SIP/2.0\r\n"), rest...)), false)
	if err != nil {
		return nil
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return nil
	}
	return rawResponse(req, code, reason)
}

// requestLineVerdict is the answer to a request whose Request-Line or headers sipgo refused.
func requestLineVerdict(line string) (int, string) {
	f := strings.Split(line, " ")
	if len(f) != 3 || !validToken(f[0]) || f[1] == "" {
		return 400, "Bad Request: malformed Request-Line"
	}
	if !strings.HasPrefix(f[2], "SIP/") {
		return 400, "Bad Request: malformed Request-Line"
	}
	if f[2] != "SIP/2.0" {
		return 505, "Version Not Supported"
	}
	if scheme, _, ok := strings.Cut(f[1], ":"); ok && validToken(scheme) {
		switch strings.ToLower(scheme) {
		case "sip", "sips", "tel":
			return 400, "Bad Request: malformed header"
		}
		return 416, "Unsupported URI Scheme"
	}
	return 400, "Bad Request: malformed Request-URI"
}

// rawResponse builds a response to req (generic headers only) from its raw Via, From, To,
// Call-ID and CSeq; nil without a Via.
func rawResponse(req *sip.Request, code int, reason string) []byte {
	res := sip.NewResponse(code, reason)
	var vias int
	var seen [len(knownNames)]bool
	for _, h := range req.Headers() {
		name := canonicalName(h.Name())
		switch name {
		case "via":
			vias++
			res.AppendHeader(sip.NewHeader("Via", h.Value()))
		case "from", "to", "call-id", "cseq":
			i := knownIndex(name)
			if seen[i] {
				continue
			}
			seen[i] = true
			v := h.Value()
			if name == "to" && !strings.Contains(strings.ToLower(strings.Join(strings.Fields(v), "")), ";tag=") {
				v += ";tag=" + sip.GenerateTagN(16)
			}
			res.AppendHeader(sip.NewHeader(headerTitle[name], v))
		}
	}
	if vias == 0 {
		return nil
	}
	res.SetBody(nil)
	return []byte(res.String())
}

var headerTitle = map[string]string{"from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}

// answerInvalid is the response to req, a request that parsed but failed validation.
func answerInvalid(req *sip.Request, code int, reason string) []byte {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	res.SipVersion = "SIP/2.0" // not the request's: a 505 goes back in the version this node speaks
	if to := res.To(); to != nil && !hasTag(to) {
		to.Params.Add("tag", sip.GenerateTagN(16))
	}
	return []byte(res.String())
}

// normalizeParams trims the white space that RFC 3261 allows around ";" and "=" (SEMI and
// EQUAL are SWS-delimited) from the parameters of req's Via, From and To headers, and drops
// empty ones: sipgo keeps it in parameter names and values, so that it cannot find the From
// tag of RFC 4475's wsinv ("; tag = 98asjd8") and answers a valid request 400. It reports
// whether it changed anything; the caller then hands sipgo req.String() instead of the
// bytes received.
func normalizeParams(req *sip.Request) bool {
	changed := false
	fix := func(p *sip.HeaderParams) {
		out := (*p)[:0]
		for _, kv := range *p {
			k, v := strings.TrimSpace(kv.K), strings.TrimSpace(kv.V)
			if k != kv.K || v != kv.V || k == "" {
				changed = true
			}
			if k != "" {
				out = append(out, sip.HeaderKV{K: k, V: v})
			}
		}
		*p = out
	}
	for _, h := range req.Headers() {
		if v, ok := h.(*sip.ViaHeader); ok {
			fix(&v.Params)
		}
	}
	if f := req.From(); f != nil {
		fix(&f.Params)
	}
	if t := req.To(); t != nil {
		fix(&t.Params)
	}
	return changed
}
