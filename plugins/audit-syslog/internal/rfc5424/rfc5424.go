// Package rfc5424 writes audit events as RFC 5424 syslog messages: PRI from
// a facility and the event's severity, an RFC 3339 timestamp with
// microseconds, the header fields within the RFC's lengths and character
// set, the envelope's essentials as STRUCTURED-DATA (SD-PARAM values
// escaped), and the whole event as UTF-8 JSON in MSG.
package rfc5424

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vramward/vramward/sdk/audit"
)

// Header field limits of RFC 5424, section 6.
const (
	MaxHostname = 255
	MaxAppName  = 48
	MaxProcID   = 128
	MaxMsgID    = 32
	MaxSDName   = 32
)

// bom starts MSG to say it is UTF-8 (RFC 5424, 6.4).
const bom = "\xef\xbb\xbf"

// Facilities by name (RFC 5424, table 1, with the usual names).
var Facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14, "solaris-cron": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// Severity maps an event severity to a syslog severity: CRITICAL to crit
// (2), HIGH to err (3), MEDIUM to warning (4), LOW to notice (5), INFO to
// info (6).
func Severity(s audit.Severity) int {
	switch s {
	case audit.Critical:
		return 2
	case audit.High:
		return 3
	case audit.Medium:
		return 4
	case audit.Low:
		return 5
	}
	return 6
}

// Header holds the fields that do not come from the event. New checks and
// fits them once; Append uses them as they are.
type Header struct {
	Facility int
	Hostname string
	AppName  string
	ProcID   string
	// SDID names the structured-data element: a private name@PEN.
	SDID string
}

// FieldError names the config field a header value came from.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// NewHeader checks the configured header fields: printable US-ASCII without
// spaces, within the RFC's lengths; the SD-ID must be name@number.
func NewHeader(facility, hostname, appName, procID, sdID string) (Header, error) {
	h := Header{Hostname: hostname, AppName: appName, ProcID: procID, SDID: sdID}
	f, ok := Facilities[facility]
	if !ok {
		return h, &FieldError{"facility", fmt.Sprintf("unknown facility %q", facility)}
	}
	h.Facility = f
	for _, c := range []struct {
		name, v string
		max     int
	}{{"hostname", hostname, MaxHostname}, {"app_name", appName, MaxAppName}, {"proc_id", procID, MaxProcID}} {
		if c.v == "" || len(c.v) > c.max || !printASCII(c.v) {
			return h, &FieldError{c.name, fmt.Sprintf("%q must be 1 to %d printable ASCII characters without spaces", c.v, c.max)}
		}
	}
	name, pen, found := strings.Cut(sdID, "@")
	if !found || name == "" || len(sdID) > MaxSDName || !sdName(sdID) || pen == "" || strings.Trim(pen, "0123456789.") != "" {
		return h, &FieldError{"sd_id", fmt.Sprintf("%q must be name@PEN (a private enterprise number), at most %d characters, without '=', ']', '\"' or spaces", sdID, MaxSDName)}
	}
	return h, nil
}

// Hostname fits a host name from the system into the header: characters
// outside printable US-ASCII become '_', and it is cut at 255 bytes.
func Hostname(s string) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	if len(b) > MaxHostname {
		b = b[:MaxHostname]
	}
	return string(b)
}

func printASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// sdName: PRINTUSASCII except '=', SP, ']' and '"'.
func sdName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			return false
		}
	}
	return true
}

// MaxShortened is the least max_message_bytes can be: room for the header,
// the structured data and the shortened MSG of any event.
const MaxShortened = 2048

// Message writes e's message, with its record line (the host's bytes) as MSG
// when the whole message fits in limit bytes, else with MSG shortened to the
// envelope (no fields) and the SD-PARAM shortened="<bytes of the full
// event>". It says whether it shortened.
func (h *Header) Message(b []byte, e *audit.Event, line []byte, limit int) ([]byte, bool) {
	start := len(b)
	b = h.Append(b, e, line)
	if len(b)-start <= limit {
		return b, false
	}
	full := len(b) - start
	short := *e
	short.Fields = nil
	b = h.Append(b[:start], e, short.AppendJSON(nil), "shortened", strconv.Itoa(full))
	if len(b)-start > limit {
		// Only a header longer than any this package writes gets here;
		// cut, and the SD-PARAM above still says so.
		b = b[:start+limit]
	}
	return b, true
}

// Append writes the message for e. msg is the MSG part (the event's JSON,
// or a shortened form); extra SD-PARAMs (name, value) follow the
// envelope's.
func (h *Header) Append(b []byte, e *audit.Event, msg []byte, extra ...string) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(h.Facility*8+Severity(e.Severity)), 10)
	b = append(b, ">1 "...)
	// TIME-SECFRAC allows at most six digits: microseconds, always UTC.
	b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	b = append(b, ' ')
	b = append(b, h.Hostname...)
	b = append(b, ' ')
	b = append(b, h.AppName...)
	b = append(b, ' ')
	b = append(b, h.ProcID...)
	b = append(b, ' ')
	b = appendMsgID(b, string(e.Type))
	b = append(b, " ["...)
	b = append(b, h.SDID...)
	b = appendParam(b, "seq", strconv.FormatUint(e.Seq, 10))
	b = appendParam(b, "severity", e.Severity.String())
	b = appendParam(b, "worker_id", e.Actor.WorkerID)
	b = appendParam(b, "correlation_id", e.Actor.CorrelationID)
	b = appendParam(b, "epoch", strconv.FormatUint(e.Chain.Epoch, 10))
	b = appendParam(b, "hash", hex.EncodeToString(e.Chain.Hash))
	for i := 0; i+1 < len(extra); i += 2 {
		b = appendParam(b, extra[i], extra[i+1])
	}
	b = append(b, "] "...)
	b = append(b, bom...)
	return append(b, msg...)
}

// appendMsgID writes the event type as MSGID: printable ASCII, at most 32
// characters (every catalogue type fits; anything else is cut visibly).
func appendMsgID(b []byte, t string) []byte {
	if t == "" {
		return append(b, '-')
	}
	if len(t) > MaxMsgID {
		t = t[:MaxMsgID-1] + "~"
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		b = append(b, c)
	}
	return b
}

// appendParam writes SP name="value" with '"', '\' and ']' escaped by a
// backslash (RFC 5424, 6.3.3), invalid UTF-8 replaced, and control
// characters written as the text \uXXXX (a raw newline would end the
// message under non-transparent framing); an empty value is left out.
func appendParam(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, '=', '"')
	for _, r := range strings.ToValidUTF8(v, "\ufffd") {
		switch r {
		case '"', '\\', ']':
			b = append(b, '\\', byte(r))
		case 0x7f:
			b = append(b, `\\u007f`...)
		default:
			if r < 0x20 || (r >= 0x80 && r < 0xa0) {
				b = fmt.Appendf(b, `\\u%04x`, r)
				continue
			}
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
