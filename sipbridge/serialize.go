package sipbridge

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Writing messages. The headers a proxy touches on every message (Via, From, To, Contact,
// Route, Record-Route, CSeq) are written here straight from sipgo's typed headers into the
// output buffer, byte for byte as sipgo's StringWrite writes them, without the strings
// sipgo builds on the way (Via's Value, a URI's parameters, the net.ParseIP of every host
// to see whether it is IPv6); every other header is written by sipgo.

// writeHeader writes one header line, without its CRLF.
func writeHeader(w *bytes.Buffer, h sip.Header) {
	switch v := h.(type) {
	case *sip.ViaHeader:
		w.WriteString("Via: ")
		w.WriteString(v.ProtocolName)
		w.WriteByte('/')
		w.WriteString(v.ProtocolVersion)
		w.WriteByte('/')
		w.WriteString(v.Transport)
		w.WriteByte(' ')
		writeHostPortParams(w, v.Host, v.Port, v.Params)
	case *sip.FromHeader:
		writeNameAddr(w, "From: ", v.DisplayName, &v.Address, v.Params)
	case *sip.ToHeader:
		writeNameAddr(w, "To: ", v.DisplayName, &v.Address, v.Params)
	case *sip.ContactHeader:
		w.WriteString("Contact: ")
		if v.Address.Wildcard {
			w.WriteByte('*')
			return
		}
		writeNameAddr(w, "", v.DisplayName, &v.Address, v.Params)
	case *sip.RouteHeader:
		writeNameAddr(w, "Route: ", "", &v.Address, nil)
	case *sip.RecordRouteHeader:
		writeNameAddr(w, "Record-Route: ", "", &v.Address, nil)
	case *sip.CSeqHeader:
		w.WriteString("CSeq: ")
		writeInt(w, int(v.SeqNo))
		w.WriteByte(' ')
		w.WriteString(string(v.MethodName))
	default:
		h.StringWrite(w)
	}
}

// writeNameAddr writes name, then a name-addr: display name, <u>, params (none when nil).
func writeNameAddr(w *bytes.Buffer, name, display string, u *sip.Uri, params sip.HeaderParams) {
	w.WriteString(name)
	if display != "" {
		w.WriteByte('"')
		w.WriteString(display)
		w.WriteString("\" ")
	}
	w.WriteByte('<')
	writeURI(w, u)
	w.WriteByte('>')
	writeParams(w, ';', params, true)
}

// writeHostPortParams writes host, :port when there is one, and ;params.
func writeHostPortParams(w *bytes.Buffer, host string, port int, params sip.HeaderParams) {
	writeHost(w, host)
	if port > 0 {
		w.WriteByte(':')
		writeInt(w, port)
	}
	writeParams(w, ';', params, true)
}

// writeURI writes u as sipgo's Uri.StringWrite does.
func writeURI(w *bytes.Buffer, u *sip.Uri) {
	scheme := u.Scheme
	if scheme == "" {
		scheme = "sip"
	}
	w.WriteString(scheme)
	w.WriteByte(':')
	if raw := u.Raw(); raw != "" {
		w.WriteString(raw)
		return
	}
	if u.HierarhicalSlashes {
		w.WriteString("//")
	}
	if u.User != "" {
		w.WriteString(u.User)
		if u.Password != "" {
			w.WriteByte(':')
			w.WriteString(u.Password)
		}
		w.WriteByte('@')
	}
	writeHostPortParams(w, u.Host, u.Port, u.UriParams)
	if len(u.Headers) > 0 {
		w.WriteByte('?')
		writeParams(w, '&', u.Headers, false)
	}
}

// writeHost writes a host, an IPv6 address in brackets.
func writeHost(w *bytes.Buffer, host string) {
	if strings.IndexByte(host, ':') >= 0 && !strings.HasPrefix(host, "[") {
		w.WriteByte('[')
		w.WriteString(host)
		w.WriteByte(']')
		return
	}
	w.WriteString(host)
}

// writeParams writes params separated by sep, preceded by sep when lead, a value holding
// white space quoted (as sipgo's HeaderParams.ToStringWrite).
func writeParams(w *bytes.Buffer, sep byte, params sip.HeaderParams, lead bool) {
	for i, kv := range params {
		if i > 0 || lead {
			w.WriteByte(sep)
		}
		w.WriteString(kv.K)
		switch {
		case kv.V == "":
		case strings.ContainsAny(kv.V, " \t"):
			w.WriteString("=\"")
			w.WriteString(kv.V)
			w.WriteByte('"')
		default:
			w.WriteByte('=')
			w.WriteString(kv.V)
		}
	}
}

func writeInt(w *bytes.Buffer, n int) {
	var buf [20]byte
	w.Write(strconv.AppendInt(buf[:0], int64(n), 10))
}
