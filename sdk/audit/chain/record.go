package chain

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/vramward/vramward/sdk/audit"
)

// Problem classifies a bad record.
type Problem string

const (
	Malformed Problem = "malformed" // not a record
	Truncated Problem = "truncated" // the last line was cut short
	Edited    Problem = "edited"    // a record's content, hash or link changed
	Missing   Problem = "missing"   // records absent (between two present ones, at the head or the tail)
	Reordered Problem = "reordered" // a record out of sequence
	Duplicate Problem = "duplicate" // the same seq twice
	Forged    Problem = "forged"    // a checkpoint or key the trail's keys do not vouch for
	Mismatch  Problem = "mismatch"  // a copy or a checkpoint disagrees with the trail
)

// Error names a bad record: where it is and what is wrong.
type Error struct {
	Problem Problem
	Source  string
	Line    int    // 0 when the problem has no line (a record that is absent)
	Seq     uint64 // 0 when the line could not be read as a record
	Detail  string
}

func (e *Error) Error() string {
	where := e.Source
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.Source, e.Line)
	}
	if e.Seq > 0 {
		return fmt.Sprintf("%s: seq %d: %s: %s", where, e.Seq, e.Problem, e.Detail)
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Problem, e.Detail)
}

// Source is one file (or stream) of a trail.
type Source struct {
	Name string
	R    io.Reader
}

// Record is one line of a trail, read and checked on its own.
type Record struct {
	Event audit.Event
	// Hash is the record's hash: recomputed from its bytes, or for a
	// shortened record the chain.hash it carries.
	Hash   []byte
	Source string
	Line   int
	// Shortened says a syslog sink sent the record without its fields (over
	// its max_message_bytes): its content cannot be checked against its hash,
	// only its place in the chain and the tree.
	Shortened bool
}

// Where names the record's place for messages.
func (r *Record) Where() string { return fmt.Sprintf("%s:%d", r.Source, r.Line) }

// Fail builds an Error at this record.
func (r *Record) Fail(p Problem, format string, args ...any) *Error {
	return &Error{Problem: p, Source: r.Source, Line: r.Line, Seq: r.Event.Seq, Detail: fmt.Sprintf(format, args...)}
}

// ReadRecords reads src line by line and calls fn with every record after
// checking it on its own: canonical form, hash. A line that is not a record,
// or a last line cut short, is an *Error; so is whatever fn returns.
func ReadRecords(src Source, fn func(Record) error) error {
	br := bufio.NewReaderSize(src.R, 64<<10)
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil
		}
		fail := func(p Problem, seq uint64, detail string) error {
			return &Error{Problem: p, Source: src.Name, Line: lineNo, Seq: seq, Detail: detail}
		}
		if errors.Is(err, errLineTooLong) {
			return fail(Malformed, 0, fmt.Sprintf("line longer than %d bytes", audit.MaxLineBytes))
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", src.Name, err)
		}
		if errors.Is(err, io.EOF) {
			// The sinks write a record and its newline in one write; a
			// line without its newline is the remains of a cut write.
			seq := uint64(0)
			if e, perr := audit.ParseJSON(RecordOf(line)); perr == nil {
				seq = e.Seq
			}
			return fail(Truncated, seq, "last line has no newline (cut short)")
		}
		rec, perr := Check(line)
		if perr != nil {
			perr.Source, perr.Line = src.Name, lineNo
			return perr
		}
		rec.Source, rec.Line = src.Name, lineNo
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// Check reads one line as a record: the line itself, or the record inside a
// syslog receiver's line. It checks the canonical form and the hash.
func Check(line []byte) (Record, *Error) {
	shortened := false
	if len(line) > 0 && line[0] == '<' {
		rec, short, ok := syslogRecord(line)
		if !ok {
			return Record{}, &Error{Problem: Malformed, Detail: "a syslog line that holds no audit record"}
		}
		line, shortened = rec, short
	}
	e, err := audit.ParseCanonical(line)
	if err != nil {
		// Not canonical, or not a record: the general parser says which.
		return checkSlow(line, shortened)
	}
	// A canonical line is its hash input with chain.hash put in: the
	// input is cut out of it rather than encoded again.
	return checkHash(Record{Event: e, Shortened: shortened}, func() []byte {
		var buf [1024]byte
		input := append(buf[:0], line[:len(line)-len(recordEnd)-2*HashSize-len(hashKey)]...)
		return LeafHash(append(input, recordEnd...))
	})
}

// checkHash checks a parsed record's chain.hash against hash, the leaf
// hash of its content (a record the syslog sink shortened keeps only its
// hash, and no fields).
func checkHash(r Record, hash func() []byte) (Record, *Error) {
	e := &r.Event
	if len(e.Chain.Hash) != HashSize {
		return r, &Error{Problem: Edited, Seq: e.Seq, Detail: "record has no chain.hash"}
	}
	if r.Shortened {
		if len(e.Fields) != 0 {
			return r, &Error{Problem: Edited, Seq: e.Seq, Detail: "a record marked shortened still holds fields"}
		}
		r.Hash = e.Chain.Hash
		return r, nil
	}
	r.Hash = hash()
	if !bytes.Equal(r.Hash, e.Chain.Hash) {
		return r, &Error{Problem: Edited, Seq: e.Seq, Detail: "chain.hash does not match the record's content"}
	}
	return r, nil
}

// checkSlow is Check through the general JSON parser, for a line the
// canonical one refused: it names what is wrong.
func checkSlow(line []byte, shortened bool) (Record, *Error) {
	e, err := audit.ParseJSON(line)
	if err != nil {
		if bytes.Contains(line, []byte(`,"mac":"`)) {
			return Record{}, &Error{Problem: Malformed, Detail: "a record of the earlier HMAC chain format (chain.mac), which this version does not verify: use the version that wrote it, with its key file"}
		}
		return Record{}, &Error{Problem: Malformed, Detail: err.Error()}
	}
	r := Record{Event: e, Shortened: shortened}
	if !e.IsCanonical(line) {
		return r, &Error{Problem: Edited, Seq: e.Seq, Detail: "record is not in canonical form (re-encoded bytes differ)"}
	}
	return checkHash(r, func() []byte { return Hash(&e) })
}

var errLineTooLong = errors.New("line too long")

// readLine returns one line without its newline, io.EOF with a final line
// that had none.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > audit.MaxLineBytes+1 {
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}

// RecordOf returns the audit record a trail line holds: the line itself, or
// the record inside a syslog receiver's line.
func RecordOf(line []byte) []byte {
	if len(line) > 0 && line[0] == '<' {
		if rec, _, ok := syslogRecord(line); ok {
			return rec
		}
	}
	return line
}

// syslogRecord finds the record in a line a syslog receiver stored: the
// audit-syslog sink sends it as the MSG of an RFC 5424 message, after the
// structured data and a UTF-8 byte order mark. shortened says the sink sent
// it shortened (over its max_message_bytes).
func syslogRecord(line []byte) (rec []byte, shortened, ok bool) {
	i := bytes.Index(line, []byte("\xef\xbb\xbf{"))
	if i < 0 {
		return nil, false, false
	}
	return line[i+3:], bytes.Contains(line[:i], []byte(` shortened="`)), true
}
