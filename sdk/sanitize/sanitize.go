// Package sanitize makes untrusted strings safe to record and to show. An
// event's strings pass through it when the event is made; a plugin uses it
// for anything it shows that came from outside (a model's metadata, say).
package sanitize

import (
	"strconv"
	"unicode/utf8"
)

// MaxStringBytes caps every string of an event (field values and actor
// fields) after sanitising; a longer one is cut and ends in a visible marker.
const MaxStringBytes = 4096

// String makes an untrusted string safe to record and to show: it can no
// longer forge a line, colour a terminal or reorder text on screen.
//
//   - C0 controls, DEL and C1 controls become \xHH or \u00HH (ANSI escape
//     sequences are therefore inert: their ESC is shown, not obeyed);
//   - Unicode bidi overrides, isolates and marks, and the line and paragraph
//     separators become \uHHHH;
//   - invalid UTF-8 becomes U+FFFD;
//   - a backslash becomes \\, so an escape in the output can only have come
//     from String and the original can be recovered;
//   - the result is cut to MaxStringBytes at an escape boundary and ends with
//     "…[truncated N bytes]" naming how many input bytes were dropped.
func String(s string) string {
	if isPlain(s) {
		return s
	}
	out := make([]byte, 0, min(len(s)+16, MaxStringBytes+8))
	// keepOut/keepIn remember the last escape boundary at which the output
	// still leaves room for the marker, in case the whole does not fit.
	keepOut, keepIn := 0, 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		out = appendEscaped(out, r, size)
		i += size
		if len(out) <= MaxStringBytes-truncationReserve {
			keepOut, keepIn = len(out), i
		}
		if len(out) > MaxStringBytes {
			return string(appendTruncated(out[:keepOut], len(s)-keepIn))
		}
	}
	return string(out)
}

// truncationReserve keeps room for the longest marker.
const truncationReserve = len("…[truncated 18446744073709551615 bytes]")

func appendTruncated(out []byte, dropped int) []byte {
	out = append(out, "…[truncated "...)
	out = strconv.AppendInt(out, int64(dropped), 10)
	return append(out, " bytes]"...)
}

// isPlain is the fast path: printable ASCII without backslashes, short enough.
func isPlain(s string) bool {
	if len(s) > MaxStringBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

const hexdigits = "0123456789abcdef"

func appendEscaped(out []byte, r rune, size int) []byte {
	switch {
	case r == utf8.RuneError && size == 1:
		return utf8.AppendRune(out, utf8.RuneError)
	case r == '\\':
		return append(out, '\\', '\\')
	case r < 0x20 || r == 0x7f:
		return append(out, '\\', 'x', hexdigits[r>>4], hexdigits[r&0xf])
	case r >= 0x80 && r <= 0x9f:
		return append(out, '\\', 'u', '0', '0', hexdigits[r>>4], hexdigits[r&0xf])
	case isBidiOrSeparator(r):
		return append(out, '\\', 'u', hexdigits[r>>12&0xf], hexdigits[r>>8&0xf], hexdigits[r>>4&0xf], hexdigits[r&0xf])
	}
	return utf8.AppendRune(out, r)
}

// isBidiOrSeparator covers the characters of "Trojan Source" (CVE-2021-42574)
// and the Unicode line and paragraph separators.
func isBidiOrSeparator(r rune) bool {
	switch r {
	case 0x061c, 0x200e, 0x200f, // ALM, LRM, RLM
		0x202a, 0x202b, 0x202c, 0x202d, 0x202e, // LRE, RLE, PDF, LRO, RLO
		0x2066, 0x2067, 0x2068, 0x2069, // LRI, RLI, FSI, PDI
		0x2028, 0x2029: // LINE SEPARATOR, PARAGRAPH SEPARATOR
		return true
	}
	return false
}
