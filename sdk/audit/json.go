package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/vramward/vramward/sdk/sanitize"
)

// TimeFormat is the one time format of a record: UTC, RFC 3339, always nine
// fractional digits, so that a time has exactly one encoding.
const TimeFormat = "2006-01-02T15:04:05.000000000Z"

const hexdigits = "0123456789abcdef"

// AppendJSON appends the event's JSON line (without the newline) to dst.
//
// The encoding is canonical: keys in the fixed envelope order (seq, id, time,
// type, severity, service_id, actor, fields, chain), field keys sorted, no
// whitespace, every key present, strings escaped one way only. A trail reader
// re-encodes what it parsed and compares bytes, so any edit, even one that
// keeps the JSON meaning, is detected.
func (e *Event) AppendJSON(dst []byte) []byte { return e.appendJSON(dst, true) }

// AppendHashInput appends the bytes chain.hash covers: the record with
// chain.hash left out.
func (e *Event) AppendHashInput(dst []byte) []byte { return e.appendJSON(dst, false) }

func (e *Event) appendJSON(b []byte, withHash bool) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"time":"`...)
	b = e.Time.UTC().AppendFormat(b, TimeFormat)
	b = append(b, `","type":`...)
	b = appendString(b, string(e.Type))
	b = append(b, `,"severity":"`...)
	b = append(b, e.Severity.String()...)
	b = append(b, `","service_id":`...)
	b = appendString(b, e.ServiceID)
	b = append(b, `,"actor":{"worker_id":`...)
	b = appendString(b, e.Actor.WorkerID)
	b = append(b, `,"source_ip":`...)
	b = appendString(b, e.Actor.SourceIP)
	b = append(b, `,"correlation_id":`...)
	b = appendString(b, e.Actor.CorrelationID)
	b = append(b, `},"fields":{`...)
	for i, f := range e.Fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f.Key)
		b = append(b, ':')
		b = f.Value.appendJSON(b)
	}
	b = append(b, `},"chain":{"epoch":`...)
	b = strconv.AppendUint(b, e.Chain.Epoch, 10)
	b = append(b, `,"prev":"`...)
	b = hex.AppendEncode(b, e.Chain.Prev)
	if withHash {
		b = append(b, `","hash":"`...)
		b = hex.AppendEncode(b, e.Chain.Hash)
	}
	return append(b, `"}}`...)
}

func (v Value) appendJSON(b []byte) []byte {
	switch v.kind {
	case KindString:
		return appendString(b, v.str)
	case KindInt:
		return strconv.AppendInt(b, int64(v.num), 10)
	case KindUint:
		return strconv.AppendUint(b, v.num, 10)
	case KindBool:
		return strconv.AppendBool(b, v.num != 0)
	}
	return append(b, "null"...)
}

// appendString writes a JSON string: quote, backslash and C0 controls
// escaped (\u00XX), U+2028/U+2029 escaped, invalid UTF-8 as \ufffd.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			default:
				b = append(b, '\\', 'u', '0', '0', hexdigits[c>>4], hexdigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == 0x2028 || r == 0x2029 {
			b = append(b, s[start:i]...)
			switch r {
			case 0x2028:
				b = append(b, `\u2028`...)
			case 0x2029:
				b = append(b, `\u2029`...)
			default:
				b = append(b, `\ufffd`...)
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// MarshalJSON encodes the event in its canonical form.
func (e Event) MarshalJSON() ([]byte, error) { return e.AppendJSON(nil), nil }

// UnmarshalJSON parses one record; see ParseJSON.
func (e *Event) UnmarshalJSON(b []byte) error {
	ev, err := ParseJSON(b)
	if err != nil {
		return err
	}
	*e = ev
	return nil
}

type wireEvent struct {
	Seq       *uint64                    `json:"seq"`
	ID        *string                    `json:"id"`
	Time      *string                    `json:"time"`
	Type      *string                    `json:"type"`
	Severity  *string                    `json:"severity"`
	ServiceID *string                    `json:"service_id"`
	Actor     *wireActor                 `json:"actor"`
	Fields    map[string]json.RawMessage `json:"fields"`
	Chain     *wireChain                 `json:"chain"`
}

type wireActor struct {
	WorkerID      string `json:"worker_id"`
	SourceIP      string `json:"source_ip"`
	CorrelationID string `json:"correlation_id"`
}

type wireChain struct {
	Epoch uint64 `json:"epoch"`
	Prev  string `json:"prev"`
	Hash  string `json:"hash"`
}

// MaxLineBytes bounds one JSON record; a longer line cannot be a record
// (the largest valid event, every string at its cap and JSON-escaped at the
// worst ratio, stays below it).
const MaxLineBytes = 4 << 20

// ParseJSON parses one JSON record and checks it with Validate. It accepts
// any JSON spelling of a record; IsCanonical tells whether the bytes are the
// exact canonical encoding.
func ParseJSON(line []byte) (Event, error) {
	if len(line) > MaxLineBytes {
		return Event{}, fmt.Errorf("record of %d bytes exceeds %d", len(line), MaxLineBytes)
	}
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Event{}, fmt.Errorf("not a JSON record: %w", err)
	}
	if dec.More() {
		return Event{}, fmt.Errorf("trailing data after the record")
	}
	switch {
	case w.Seq == nil:
		return Event{}, fmt.Errorf("record has no seq")
	case w.ID == nil, w.Time == nil, w.Type == nil, w.Severity == nil, w.ServiceID == nil, w.Actor == nil, w.Fields == nil, w.Chain == nil:
		return Event{}, fmt.Errorf("seq %d: record lacks an envelope key", *w.Seq)
	}
	e := Event{Seq: *w.Seq, ID: *w.ID, Type: Type(*w.Type), ServiceID: *w.ServiceID,
		Actor: Actor(*w.Actor), Chain: Chain{Epoch: w.Chain.Epoch}}
	var err error
	if e.Time, err = time.Parse(time.RFC3339Nano, *w.Time); err != nil {
		return Event{}, fmt.Errorf("seq %d: time: %w", e.Seq, err)
	}
	e.Time = e.Time.UTC()
	if e.Severity, err = ParseSeverity(*w.Severity); err != nil {
		return Event{}, fmt.Errorf("seq %d: %w", e.Seq, err)
	}
	if e.Chain.Prev, err = decodeHash(w.Chain.Prev); err != nil {
		return Event{}, fmt.Errorf("seq %d: chain.prev: %w", e.Seq, err)
	}
	if e.Chain.Hash, err = decodeHash(w.Chain.Hash); err != nil {
		return Event{}, fmt.Errorf("seq %d: chain.hash: %w", e.Seq, err)
	}
	if len(w.Fields) > MaxFields {
		return Event{}, fmt.Errorf("seq %d: %d fields, at most %d", e.Seq, len(w.Fields), MaxFields)
	}
	e.Fields = make([]Field, 0, len(w.Fields))
	for k, raw := range w.Fields {
		v, err := parseValue(raw)
		if err != nil {
			return Event{}, fmt.Errorf("seq %d: field %q: %w", e.Seq, sanitize.String(k), err)
		}
		e.Fields = append(e.Fields, Field{Key: k, Value: v})
	}
	sort.Slice(e.Fields, func(i, j int) bool { return e.Fields[i].Key < e.Fields[j].Key })
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// IsCanonical reports whether line is exactly e's canonical encoding.
func (e *Event) IsCanonical(line []byte) bool {
	var buf [1024]byte
	return bytes.Equal(e.AppendJSON(buf[:0]), line)
}

func decodeHash(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) != 64 {
		return nil, fmt.Errorf("want 64 hex digits, got %d characters", len(s))
	}
	return hex.DecodeString(s)
}

func parseValue(raw json.RawMessage) (Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Value{}, fmt.Errorf("empty value")
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Value{}, err
		}
		return Value{kind: KindString, str: s}, nil
	case c == 't' || c == 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return Value{}, err
		}
		return Bool("", b).Value, nil
	case c == '-':
		i, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("want an integer, got %.40s", raw)
		}
		return Int("", i).Value, nil
	case c >= '0' && c <= '9':
		n, err := strconv.ParseUint(string(raw), 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("want an integer, got %.40s", raw)
		}
		return Uint("", n).Value, nil
	}
	return Value{}, fmt.Errorf("want a string, integer or bool, got %.40s", raw)
}
