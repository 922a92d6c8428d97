package audit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/vramward/vramward/sdk/sanitize"
)

// ParseCanonical parses a record that must be in the exact canonical form
// AppendJSON writes, and validates it. It is several times faster than
// ParseJSON, which accepts any JSON spelling; the SDK's server uses it on
// every record a sink receives.
func ParseCanonical(line []byte) (Event, error) {
	var fields []Field
	return parseCanonicalInto(string(line), &fields)
}

// errNotCanonical is wrapped by every ParseCanonical error about the form.
var errNotCanonical = errors.New("not a canonical record")

type cparser struct {
	s   string // the whole record; escape-free strings are slices of it
	pos int
}

func (p *cparser) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", errNotCanonical, what, p.pos)
}

func (p *cparser) lit(want string) bool {
	if len(p.s)-p.pos < len(want) || p.s[p.pos:p.pos+len(want)] != want {
		return false
	}
	p.pos += len(want)
	return true
}

func (p *cparser) uint() (uint64, bool) {
	start := p.pos
	for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
		p.pos++
	}
	if p.pos == start || (p.s[start] == '0' && p.pos-start > 1) {
		return 0, false
	}
	n, err := strconv.ParseUint(p.s[start:p.pos], 10, 64)
	return n, err == nil
}

// str parses a JSON string as AppendJSON writes it: a string without
// escapes is returned as a slice of the record; one with escapes is decoded
// and must re-encode to the same bytes.
// strStop marks the bytes a plain string scan stops at: the closing quote,
// an escape, a control character, and the start of a multi-byte rune.
var strStop = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf
	}
	return t
}()

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

func load8(s string, i int) uint64 {
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// stops8 says whether any of eight bytes is one strStop marks: a byte of
// 0x80 or more, below 0x20, a quote or a backslash (the classic
// has-zero-byte and has-less-than tests, exact as a yes or no).
func stops8(x uint64) bool {
	if x&hi8 != 0 {
		return true
	}
	q, b := x^('"'*lo8), x^('\\'*lo8)
	return ((x-0x20*lo8)&^x|(q-lo8)&^q|(b-lo8)&^b)&hi8 != 0
}

func (p *cparser) str() (string, bool) {
	if !p.lit(`"`) {
		return "", false
	}
	start := p.pos
	ascii := true
	for {
		// Eight bytes at a time while none of them stops the scan.
		for p.pos+8 <= len(p.s) && !stops8(load8(p.s, p.pos)) {
			p.pos += 8
		}
		for p.pos < len(p.s) && !strStop[p.s[p.pos]] {
			p.pos++
		}
		if p.pos >= len(p.s) {
			return "", false
		}
		switch c := p.s[p.pos]; {
		case c == '"':
			raw := p.s[start:p.pos]
			p.pos++
			// AppendJSON escapes U+2028, U+2029 and invalid UTF-8, so a
			// canonical unescaped string holds none of them.
			if !ascii && (!utf8.ValidString(raw) || strings.Contains(raw, "\u2028") || strings.Contains(raw, "\u2029")) {
				return "", false
			}
			return raw, true
		case c >= utf8.RuneSelf:
			ascii = false
			p.pos++
		case c == '\\':
			return p.escaped(start)
		default: // a control character
			return "", false
		}
	}
}

func (p *cparser) escaped(start int) (string, bool) {
	buf := []byte(p.s[start:p.pos])
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == '"':
			p.pos++
			out := string(buf)
			// Only AppendJSON's spelling is canonical.
			if string(appendString(nil, out)) != p.s[start-1:p.pos] {
				return "", false
			}
			return out, true
		case c < 0x20:
			return "", false
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.s) {
			return "", false
		}
		e := p.s[p.pos+1]
		p.pos += 2
		switch e {
		case '"', '\\':
			buf = append(buf, e)
		case 'u':
			r, ok := p.hex4()
			if !ok || utf16.IsSurrogate(r) {
				return "", false // AppendJSON writes no surrogate escapes
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", false // \n, \t, \/ and friends are never written
		}
	}
	return "", false
}

func (p *cparser) hex4() (rune, bool) {
	if len(p.s)-p.pos < 4 {
		return 0, false
	}
	var r rune
	for i := 0; i < 4; i++ {
		c := p.s[p.pos+i]
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// hashes parses prev and hash (lower-case hex or empty) into one allocation.
// hexVal is a lower-case hex digit's value, -1 for any other byte.
var hexVal = func() (t [256]int8) {
	for c := range t {
		t[c] = -1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = int8(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = int8(c - 'a' + 10)
	}
	return t
}()

func (p *cparser) hashes() (prev, hash []byte, ok bool) {
	var raw [2]string
	for i, key := range []string{`,"prev":"`, `","hash":"`} {
		if !p.lit(key) {
			return nil, nil, false
		}
		end := strings.IndexByte(p.s[p.pos:], '"')
		if end != 0 && end != 64 {
			return nil, nil, false
		}
		raw[i] = p.s[p.pos : p.pos+end]
		p.pos += end
	}
	buf := make([]byte, 64)
	for i, h := range raw {
		if h == "" {
			continue
		}
		// Lower-case hex only: that is AppendJSON's spelling.
		out := buf[i*32 : i*32+32]
		for j := range out {
			hi, lo := hexVal[h[2*j]], hexVal[h[2*j+1]]
			if hi < 0 || lo < 0 {
				return nil, nil, false
			}
			out[j] = byte(hi<<4 | lo)
		}
		if i == 0 {
			prev = buf[0:32:32]
		} else {
			hash = buf[32:64:64]
		}
	}
	return prev, hash, true
}

func (p *cparser) value() (Value, bool) {
	if p.pos >= len(p.s) {
		return Value{}, false
	}
	switch c := p.s[p.pos]; {
	case c == '"':
		s, ok := p.str()
		return Value{kind: KindString, str: s}, ok
	case c == 't':
		return Bool("", true).Value, p.lit("true")
	case c == 'f':
		return Bool("", false).Value, p.lit("false")
	case c == '-':
		p.pos++
		n, ok := p.uint()
		if !ok || n == 0 || n > 1<<63 {
			return Value{}, false
		}
		return Value{kind: KindInt, num: uint64(-int64(n-1) - 1)}, true
	default:
		n, ok := p.uint()
		return Value{kind: KindUint, num: n}, ok
	}
}

// parseCanonicalInto parses one record held in line (a slice of a batch's
// records, so the strings of its events share one allocation).
func parseCanonicalInto(line string, fields *[]Field) (Event, error) {
	if len(line) > MaxLineBytes {
		return Event{}, fmt.Errorf("record of %d bytes exceeds %d", len(line), MaxLineBytes)
	}
	p := &cparser{s: line}
	var e Event
	var ts, typ, sev string
	ok := p.lit(`{"seq":`)
	if ok {
		e.Seq, ok = p.uint()
	}
	for _, f := range []struct {
		key string
		dst *string
	}{
		{`,"id":`, &e.ID}, {`,"time":`, &ts}, {`,"type":`, &typ}, {`,"severity":`, &sev}, {`,"service_id":`, &e.ServiceID},
		{`,"actor":{"worker_id":`, &e.Actor.WorkerID}, {`,"source_ip":`, &e.Actor.SourceIP}, {`,"correlation_id":`, &e.Actor.CorrelationID},
	} {
		if ok = ok && p.lit(f.key); ok {
			*f.dst, ok = p.str()
		}
	}
	ok = ok && p.lit(`},"fields":{`)
	start := len(*fields)
	for i := 0; ok && p.pos < len(p.s) && p.s[p.pos] != '}'; i++ {
		if i >= MaxFields {
			return Event{}, fmt.Errorf("seq %d: more than %d fields", e.Seq, MaxFields)
		}
		if i > 0 && !p.lit(",") {
			ok = false
			break
		}
		var f Field
		if f.Key, ok = p.str(); ok && p.lit(":") {
			f.Value, ok = p.value()
		} else {
			ok = false
		}
		*fields = append(*fields, f)
	}
	if ok = ok && p.lit(`},"chain":{"epoch":`); ok {
		e.Chain.Epoch, ok = p.uint()
	}
	if ok {
		e.Chain.Prev, e.Chain.Hash, ok = p.hashes()
	}
	ok = ok && p.lit(`"}}`) && p.pos == len(p.s)
	if !ok {
		return Event{}, p.fail("unexpected bytes")
	}
	e.Fields = (*fields)[start:len(*fields):len(*fields)]
	e.Type = Type(typ)
	var err error
	if e.Severity, err = ParseSeverity(sev); err != nil {
		return Event{}, fmt.Errorf("seq %d: %w", e.Seq, err)
	}
	if e.Time, ok = parseRecordTime(ts); !ok {
		return Event{}, fmt.Errorf("%w: seq %d: time %q is not in the record format %s", errNotCanonical, e.Seq, sanitize.String(ts), TimeFormat)
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// parseRecordTime reads TimeFormat ("2006-01-02T15:04:05.000000000Z")
// without time.Parse's generality, refusing any value that would not format
// back to the same text.
func parseRecordTime(s string) (time.Time, bool) {
	if len(s) != len(TimeFormat) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[29] != 'Z' {
		return time.Time{}, false
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	var v [7]int
	for i, r := range [7][2]int{{0, 4}, {5, 7}, {8, 10}, {11, 13}, {14, 16}, {17, 19}, {20, 29}} {
		n, ok := num(r[0], r[1])
		if !ok {
			return time.Time{}, false
		}
		v[i] = n
	}
	t := time.Date(v[0], time.Month(v[1]), v[2], v[3], v[4], v[5], v[6], time.UTC)
	// time.Date normalises 2026-02-30 to March 2nd; such a text is not a time.
	if t.Year() != v[0] || int(t.Month()) != v[1] || t.Day() != v[2] || t.Hour() != v[3] || t.Minute() != v[4] || t.Second() != v[5] {
		return time.Time{}, false
	}
	return t, true
}
