package chain

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/vramward/vramward/sdk/audit"
)

// trail links n events and returns their lines.
func trail(t testing.TB, n int) [][]byte {
	t.Helper()
	l := &Linker{}
	var lines [][]byte
	for i := 0; i < n; i++ {
		e, err := audit.New(audit.SealVerified, audit.Actor{WorkerID: "w"}, audit.Str("shard_id", "s"), audit.Uint("gpu_device", uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		r := l.Link(&e, 0)
		lines = append(lines, r.Line)
	}
	return lines
}

// The line a link returns is the event's record, byte for byte: the fields
// are encoded once, and closing the hash input with the hash gives
// what AppendJSON would (first record, later ones, escapes, other epochs).
func TestLinkReturnsTheRecordLine(t *testing.T) {
	l := &Linker{}
	for i, s := range []string{"plain", "quote\" and \\ back", "\x00\x1f\u2028", strings.Repeat("é", 700)} {
		e, err := audit.New(audit.SealVerified, audit.Actor{WorkerID: s}, audit.Str("shard_id", s), audit.Uint("gpu_device", uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		r := l.Link(&e, uint64(i*7))
		if want := e.AppendJSON(nil); !bytes.Equal(r.Line, want) {
			t.Fatalf("record %d:\n%s\nwant\n%s", i, r.Line, want)
		}
		if r.Seq != e.Seq || !bytes.Equal(r.Chain.Hash, e.Chain.Hash) || !bytes.Equal(e.Chain.Hash, Hash(&e)) {
			t.Fatalf("record %d: the record's event is not the linked event", i)
		}
	}
}

func join(lines [][]byte) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func verify(data ...[]byte) (Report, error) {
	var srcs []Source
	for i, d := range data {
		srcs = append(srcs, Source{Name: []string{"a.log", "b.log", "c.log"}[i], R: bytes.NewReader(d)})
	}
	return VerifyLinks(srcs...)
}

func TestLeafHashIsRFC6962(t *testing.T) {
	// RFC 6962 2.1: the hash of the empty leaf is SHA-256(0x00).
	if got := strings.ToLower(string(hexOf(LeafHash(nil)))); got != "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d" {
		t.Fatalf("leaf hash of the empty string: %s", got)
	}
}

func hexOf(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

func TestVerifyLinksGoodTrail(t *testing.T) {
	lines := trail(t, 10)
	rep, err := verify(join(lines))
	if err != nil {
		t.Fatal(err)
	}
	last, _ := audit.ParseJSON(lines[9])
	if rep.Records != 10 || rep.FirstSeq != 1 || rep.LastSeq != 10 || !bytes.Equal(rep.LastHash, last.Chain.Hash) {
		t.Fatalf("report %+v", rep)
	}
	if _, err := verify(join(lines[:3]), join(lines[3:7]), join(lines[7:])); err != nil {
		t.Fatalf("rotated trail: %v", err)
	}
	if rep, err := verify(join(lines[5:])); err != nil || rep.FirstSeq != 6 {
		t.Fatalf("later part: %+v, %v", rep, err)
	}
}

func TestVerifyLinksFindsFirstBadRecord(t *testing.T) {
	lines := trail(t, 8)
	edit := func(i int, from, to string) [][]byte {
		out := append([][]byte(nil), lines...)
		out[i] = bytes.Replace(lines[i], []byte(from), []byte(to), 1)
		return out
	}
	cut := join(lines)
	for _, tc := range []struct {
		name    string
		data    []byte
		problem Problem
		line    int
		seq     uint64
	}{
		{"edited field", join(edit(4, `"gpu_device":4`, `"gpu_device":5`)), Edited, 5, 5},
		{"edited first record", join(edit(0, `"gpu_device":0`, `"gpu_device":9`)), Edited, 1, 1},
		{"edited hash", join(edit(2, `"hash":"`, `"hash":"0`)), Malformed, 3, 0},
		{"missing record", join(append(append([][]byte{}, lines[:3]...), lines[4:]...)), Missing, 4, 5},
		{"reordered", join([][]byte{lines[0], lines[1], lines[3], lines[2], lines[4]}), Missing, 3, 4},
		{"moved back", join([][]byte{lines[0], lines[1], lines[2], lines[1]}), Reordered, 4, 2},
		{"duplicate", join([][]byte{lines[0], lines[1], lines[1], lines[2]}), Duplicate, 3, 2},
		{"truncated last line", cut[:len(cut)-20], Truncated, 8, 0},
		{"last line lost its newline", cut[:len(cut)-1], Truncated, 8, 8},
		{"not canonical", join(edit(3, `"seq":4,`, `"seq": 4,`)), Edited, 4, 4},
		{"garbage line", join(append(append([][]byte{}, lines[:2]...), []byte("hello"))), Malformed, 3, 0},
		{"empty line", join(append(append([][]byte{}, lines[:2]...), []byte(""))), Malformed, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verify(tc.data)
			var ve *Error
			if !errors.As(err, &ve) {
				t.Fatalf("want *Error, got %v", err)
			}
			if ve.Problem != tc.problem || ve.Line != tc.line || ve.Seq != tc.seq {
				t.Fatalf("got %s at line %d seq %d (%v); want %s at line %d seq %d", ve.Problem, ve.Line, ve.Seq, ve, tc.problem, tc.line, tc.seq)
			}
			if !strings.HasPrefix(ve.Error(), "a.log:") {
				t.Errorf("message does not name the source: %v", ve)
			}
		})
	}
}

// A record whose content and hash were both rewritten still breaks the link
// from the next record.
func TestVerifyLinksRehashedRecordBreaksNextLink(t *testing.T) {
	lines := trail(t, 5)
	e, err := audit.ParseJSON(lines[2])
	if err != nil {
		t.Fatal(err)
	}
	e.Fields[0] = audit.Uint("gpu_device", 77)
	e.Chain.Hash = Hash(&e)
	lines[2] = e.AppendJSON(nil)
	_, err = verify(join(lines))
	var ve *Error
	if !errors.As(err, &ve) || ve.Problem != Edited || ve.Seq != 4 || !strings.Contains(ve.Detail, "chain.prev") {
		t.Fatalf("got %v", err)
	}
}

// FuzzVerifyLinks: no trail, however hostile, panics the verifier.
func FuzzVerifyLinks(f *testing.F) {
	f.Add(join(trail(f, 6)))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"id":"","time":"2026-01-01T00:00:00.000000000Z","type":"X","severity":"INFO","service_id":"","actor":{"worker_id":"","source_ip":"","correlation_id":""},"fields":{},"chain":{"epoch":1048576,"prev":"","hash":""}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := VerifyLinks(Source{Name: "fuzz", R: bytes.NewReader(data)})
		if err == nil && rep.Records > 0 && rep.LastSeq < rep.FirstSeq {
			t.Fatalf("report out of order: %+v", rep)
		}
		var ve *Error
		if err != nil && !errors.As(err, &ve) {
			t.Fatalf("non-typed error from an in-memory source: %v", err)
		}
	})
}

// A syslog receiver's copy (RFC 5424 lines whose MSG is the record, as the
// audit-syslog sink sends them) checks like the file; a record the sink had
// to shorten keeps its place in the chain by its hash.
func TestVerifyLinksSyslogCopy(t *testing.T) {
	lines := trail(t, 6)
	syslog := make([][]byte, len(lines))
	for i, l := range lines {
		syslog[i] = append([]byte(`<38>1 2026-11-23T01:02:03.000000Z gpu-1 vramward 42 SealVerified [vramward@32473 seq="`+
			strconv.Itoa(i+1)+`" hash="x\]y"] `+"\xef\xbb\xbf"), l...)
	}
	rep, err := verify(join(syslog))
	if err != nil || rep.Records != 6 {
		t.Fatalf("syslog copy: %+v %v", rep, err)
	}
	short := append([][]byte(nil), syslog...)
	e, _ := audit.ParseJSON(lines[3])
	e.Fields = nil
	short[3] = append([]byte(`<38>1 2026-11-23T01:02:03.000000Z gpu-1 vramward 42 SealVerified [vramward@32473 seq="4" shortened="9000"] `+"\xef\xbb\xbf"), e.AppendJSON(nil)...)
	rep, err = verify(join(short))
	if err != nil || len(rep.Shortened) != 1 || rep.Shortened[0] != 4 {
		t.Fatalf("shortened record: %+v %v", rep, err)
	}
	var ve *Error
	_, err = verify([]byte("<14>1 - - other - - - not ours\n"))
	if !errors.As(err, &ve) || ve.Problem != Malformed {
		t.Fatalf("a foreign syslog line: %v", err)
	}
}

func TestOldFormatNamed(t *testing.T) {
	old := `{"seq":1,"id":"x","time":"2026-01-01T00:00:00.000000000Z","type":"HostStarted","severity":"INFO","service_id":"","actor":{"worker_id":"","source_ip":"","correlation_id":""},"fields":{},"chain":{"epoch":0,"prev":"","mac":"00"}}`
	_, err := verify([]byte(old + "\n"))
	if err == nil || !strings.Contains(err.Error(), "earlier HMAC chain format") {
		t.Fatalf("an old-format trail: %v", err)
	}
}

// Check takes a canonical line by the fast parser and cuts its hash input
// out of it; a line in any other spelling, or edited, goes the general way
// and is named for what is wrong. Both ways agree on a good line's hash.
func TestCheckFastAndGeneralAgree(t *testing.T) {
	for _, line := range trail(t, 3) {
		fast, err := Check(line)
		if err != nil {
			t.Fatal(err)
		}
		slow, err := checkSlow(line, false)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast.Hash, slow.Hash) || !bytes.Equal(fast.Hash, fast.Event.Chain.Hash) {
			t.Fatalf("hashes: fast %x, general %x, record %x", fast.Hash, slow.Hash, fast.Event.Chain.Hash)
		}
	}
	line := trail(t, 1)[0]
	for name, edit := range map[string]struct {
		line   []byte
		detail string
	}{
		"respelled": {bytes.Replace(line, []byte(`{"seq":1,`), []byte(`{"seq": 1,`), 1), "not in canonical form"},
		"field":     {bytes.Replace(line, []byte(`"gpu_device":0`), []byte(`"gpu_device":1`), 1), "does not match the record's content"},
		"truncated": {line[:len(line)-2], ""},
	} {
		_, err := Check(edit.line)
		if err == nil || !strings.Contains(err.Detail, edit.detail) {
			t.Errorf("%s: %v, want %q", name, err, edit.detail)
		}
	}
}
