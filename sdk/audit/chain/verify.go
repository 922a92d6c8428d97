package chain

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vramward/vramward/sdk/audit"
)

// Problem classifies the first bad record of a trail.
type Problem string

const (
	Malformed Problem = "malformed" // not a record
	Truncated Problem = "truncated" // the last line was cut short
	Edited    Problem = "edited"    // a record's content, MAC or link changed
	Missing   Problem = "missing"   // records absent between two present ones
	Reordered Problem = "reordered" // a record out of sequence
	Duplicate Problem = "duplicate" // the same seq twice
	WrongKey  Problem = "wrong-key" // no record verifies with the key given
)

// Error names the first bad record of a trail: where it is and what is wrong.
type Error struct {
	Problem Problem
	Source  string
	Line    int
	Seq     uint64 // 0 when the line could not be read as a record
	Detail  string
}

func (e *Error) Error() string {
	where := fmt.Sprintf("%s:%d", e.Source, e.Line)
	if e.Seq > 0 {
		return fmt.Sprintf("%s: seq %d: %s: %s", where, e.Seq, e.Problem, e.Detail)
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Problem, e.Detail)
}

// Report summarises a trail that verified.
type Report struct {
	Records    int
	FirstSeq   uint64
	LastSeq    uint64
	FirstEpoch uint64
	LastEpoch  uint64
	// PartialStart is true when the trail does not begin at the chain's first
	// record (older files were rotated away): what came before is unchecked.
	PartialStart bool
	// LastType is the type of the last record; a trail of a host that stopped
	// cleanly ends with HostStopped. A chain alone cannot reveal records cut
	// from the end; compare LastSeq with another sink's copy.
	LastType audit.Type
	// LastMAC is the last record's MAC: two copies that end at the same seq
	// hold the same chain only if their last MACs are equal.
	LastMAC []byte
	// MACsChecked is false when no key was given and only the structure
	// (seq order and prev links) was checked.
	MACsChecked bool
	// Segments lists where the host started a new chain segment after an
	// unclean stop: the records between AfterSeq and StartSeq were lost with
	// the host's memory (or cut by someone: compare another sink's copy).
	Segments []Segment
}

// Segment is the start of a new chain segment: a HostStarted record with no
// prev, whose seq skips past every seq the previous run could have used.
type Segment struct {
	Source   string
	Line     int
	AfterSeq uint64
	StartSeq uint64
}

// Source is one file (or stream) of a trail. A rotated trail is given as
// several sources, oldest first.
type Source struct {
	Name string
	R    io.Reader
}

// MaxEpochJump bounds how far one record may move the epoch forward, so that a
// hostile file cannot make the verifier evolve a key for hours. At the default
// 15-minute epochs it is over 30 years of idle host.
const MaxEpochJump = 1 << 20

// Verify reads JSON-lines sources in order and checks every record: its
// canonical form, seq continuity, the prev links and, when k0 is non-nil, every
// MAC. It returns the report, or an *Error for the first bad record.
func Verify(k0 *Key, sources ...Source) (Report, error) {
	v := NewVerifier(k0)
	for _, src := range sources {
		if err := v.ReadFrom(src); err != nil {
			return v.Report(), err
		}
	}
	return v.Report(), v.Close()
}

// Verifier checks records one at a time, for trails read incrementally.
type Verifier struct {
	k0     *Key
	key    Key
	epoch  uint64
	rep    Report
	prev   []byte
	buf    []byte
	source string
	// pending holds a first record whose MAC failed: if the next record fails
	// too the key is wrong, otherwise the first record was edited.
	pending *Error
	// gap holds a record that skipped seqs: if the next record fills the gap
	// the records were reordered, otherwise some are missing.
	gap *Error
}

// NewVerifier starts a verification; k0 may be nil for a structural check.
func NewVerifier(k0 *Key) *Verifier {
	v := &Verifier{k0: k0}
	if k0 != nil {
		v.key = *k0
		v.rep.MACsChecked = true
	}
	return v
}

// ReadFrom checks every line of one source.
func (v *Verifier) ReadFrom(src Source) error {
	v.source = src.Name
	br := bufio.NewReaderSize(src.R, 64<<10)
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil
		}
		if errors.Is(err, errLineTooLong) {
			return v.fail(Malformed, lineNo, 0, fmt.Sprintf("line longer than %d bytes", audit.MaxLineBytes))
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", src.Name, err)
		}
		if errors.Is(err, io.EOF) {
			// The sink writes a record and its newline in one write; a
			// line without its newline is the remains of a cut write.
			seq := uint64(0)
			if e, perr := audit.ParseJSON(line); perr == nil {
				seq = e.Seq
			}
			return v.fail(Truncated, lineNo, seq, "last line has no newline (cut short)")
		}
		if err := v.Record(line, lineNo); err != nil {
			return err
		}
	}
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
// the record inside a syslog receiver's line (see Verifier.Record).
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

// Record checks one line, numbered lineNo in the current source. A line
// that starts with '<' is taken for a syslog receiver's copy of a record.
func (v *Verifier) Record(line []byte, lineNo int) error {
	if len(line) > 0 && line[0] == '<' {
		rec, shortened, ok := syslogRecord(line)
		if !ok {
			return v.fail(Malformed, lineNo, 0, "a syslog line that holds no audit record")
		}
		if shortened {
			seq := uint64(0)
			if e, err := audit.ParseJSON(rec); err == nil {
				seq = e.Seq
			}
			return v.fail(Edited, lineNo, seq, "the syslog sink sent this record shortened (over its max_message_bytes): check this seq in a full copy")
		}
		line = rec
	}
	e, err := audit.ParseJSON(line)
	if g := v.gap; g != nil {
		if err == nil && e.Seq > v.rep.LastSeq && e.Seq < g.Seq {
			g.Problem = Reordered
			g.Detail = fmt.Sprintf("comes before seq %d (line %d)", e.Seq, lineNo)
		}
		return g
	}
	if err != nil {
		return v.fail(Malformed, lineNo, 0, err.Error())
	}
	if !e.IsCanonical(line) {
		return v.fail(Edited, lineNo, e.Seq, "record is not in canonical form (re-encoded bytes differ)")
	}
	first := v.rep.Records == 0
	if first {
		v.rep.FirstSeq, v.rep.FirstEpoch = e.Seq, e.Chain.Epoch
		v.rep.PartialStart = e.Seq != 1 || e.Chain.Prev != nil
		if e.Seq == 1 && e.Chain.Prev != nil {
			return v.fail(Edited, lineNo, e.Seq, "the first record of a chain links to a previous one")
		}
		if e.Chain.Epoch > MaxEpochJump {
			return v.fail(Malformed, lineNo, e.Seq, fmt.Sprintf("epoch %d is beyond what a verifier will derive", e.Chain.Epoch))
		}
	} else if e.Type == audit.HostStarted && e.Chain.Prev == nil && e.Seq > v.rep.LastSeq && e.Chain.Epoch > v.rep.LastEpoch {
		v.rep.Segments = append(v.rep.Segments, Segment{Source: v.source, Line: lineNo, AfterSeq: v.rep.LastSeq, StartSeq: e.Seq})
	} else {
		last := v.rep.LastSeq
		switch {
		case e.Seq == last:
			return v.fail(Duplicate, lineNo, e.Seq, fmt.Sprintf("seq %d appears twice", e.Seq))
		case e.Seq < last:
			return v.fail(Reordered, lineNo, e.Seq, fmt.Sprintf("follows seq %d", last))
		case e.Seq > last+1:
			if v.pending != nil {
				return v.fail("", 0, 0, "")
			}
			v.gap = &Error{Problem: Missing, Source: v.source, Line: lineNo, Seq: e.Seq,
				Detail: fmt.Sprintf("records %d to %d are missing", last+1, e.Seq-1)}
			return nil
		}
		if !bytes.Equal(e.Chain.Prev, v.prev) {
			return v.fail(Edited, lineNo, e.Seq, fmt.Sprintf("chain.prev does not match the MAC of seq %d", last))
		}
		if e.Chain.Epoch < v.rep.LastEpoch || e.Chain.Epoch-v.rep.LastEpoch > MaxEpochJump {
			return v.fail(Edited, lineNo, e.Seq, fmt.Sprintf("epoch %d after epoch %d", e.Chain.Epoch, v.rep.LastEpoch))
		}
	}
	if v.k0 != nil {
		for v.epoch < e.Chain.Epoch {
			v.key = Evolve(v.key)
			v.epoch++
		}
		var buf [1024]byte
		ok := hmac.Equal(MAC(v.key, e.Chain.Prev, e.AppendCanonical(buf[:0])), e.Chain.MAC)
		switch {
		case v.pending != nil && ok:
			p := v.pending
			p.Problem, p.Detail = Edited, "MAC does not match (the next record verifies, so the key is right)"
			return p
		case v.pending != nil:
			p := v.pending
			p.Problem, p.Detail = WrongKey, "no record verifies with this key"
			return p
		case !ok && first:
			v.pending = &Error{Source: v.source, Line: lineNo, Seq: e.Seq}
		case !ok:
			return v.fail(Edited, lineNo, e.Seq, "MAC does not match")
		}
	}
	v.rep.Records++
	v.rep.LastSeq, v.rep.LastEpoch, v.rep.LastType, v.rep.LastMAC = e.Seq, e.Chain.Epoch, e.Type, e.Chain.MAC
	v.prev = e.Chain.MAC
	return nil
}

func (v *Verifier) fail(p Problem, line int, seq uint64, detail string) error {
	if v.pending != nil {
		// The first record's MAC failed and nothing after it can tell why.
		pe := v.pending
		pe.Problem, pe.Detail = WrongKey, "MAC does not match: wrong key, or this record was edited"
		return pe
	}
	if v.gap != nil {
		return v.gap
	}
	return &Error{Problem: p, Source: v.source, Line: line, Seq: seq, Detail: detail}
}

// Close reports a judgement still pending at the end of the trail.
func (v *Verifier) Close() error {
	if v.pending != nil || v.gap != nil {
		return v.fail("", 0, 0, "")
	}
	return nil
}

// Report returns what has been verified so far.
func (v *Verifier) Report() Report { return v.rep }

// VerifyFiles verifies the trail held in the files at paths, in the order
// given (oldest first).
func VerifyFiles(k0 *Key, paths ...string) (Report, error) {
	var srcs []Source
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return Report{}, err
		}
		defer f.Close()
		srcs = append(srcs, Source{Name: p, R: f})
	}
	return Verify(k0, srcs...)
}
