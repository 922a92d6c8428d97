package trail

import (
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// Verifying files: a trail split across rotated files, in order, and
// comparing a copy with the trail.

// OrderFiles sorts trail files by the seq of their first record, so that a
// rotated set, a copy and the files of several runs may be given in any
// order. A file whose first line is not a record keeps its place last, for
// the verifier to name.
func OrderFiles(paths []string) ([]string, error) {
	type keyed struct {
		path string
		seq  uint64
		ok   bool
	}
	ks := make([]keyed, 0, len(paths))
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("open trail: %w", err)
		}
		k := keyed{path: p}
		_ = chain.ReadRecords(chain.Source{Name: p, R: io.LimitReader(f, audit.MaxLineBytes+1)}, func(r chain.Record) error {
			k.seq, k.ok = r.Event.Seq, true
			return errStop
		})
		f.Close()
		ks = append(ks, k)
	}
	sort.SliceStable(ks, func(i, j int) bool {
		if ks[i].ok != ks[j].ok {
			return ks[i].ok
		}
		return ks[i].seq < ks[j].seq
	})
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.path
	}
	return out, nil
}

var errStop = fmt.Errorf("stop")

// VerifyFiles verifies the trail held in files, in any order.
func VerifyFiles(opts Options, paths ...string) (Report, error) {
	ordered, err := OrderFiles(paths)
	if err != nil {
		return Report{}, err
	}
	v := NewVerifier(opts)
	for _, p := range ordered {
		f, err := os.Open(p)
		if err != nil {
			return v.rep, fmt.Errorf("open trail: %w", err)
		}
		err = v.ReadFrom(chain.Source{Name: p, R: f})
		f.Close()
		if err != nil {
			return v.rep, err
		}
	}
	return v.Close()
}

// lost says whether rep explains seq as lost in a crash.
func lost(rep *Report, seq uint64) bool {
	for _, r := range rep.Lost {
		if seq >= r.From && seq <= r.To {
			return true
		}
	}
	return false
}

// Compare checks that a copy holds exactly the records of the trail, seq by
// seq (both verified with Options.Keep): a record either lacks is a cut or an
// insertion in one of them, unless that one explains it as lost in a crash
// (a note).
func Compare(tr, cp *Report, name string) ([]string, error) {
	a, b := tr.Seen, cp.Seen
	var notes []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j >= len(b) || i < len(a) && a[i].Seq < b[j].Seq:
			if lost(cp, a[i].Seq) {
				notes = append(notes, fmt.Sprintf("seq %d (%s:%d) is not in %s: lost there in a crash, as its AuditRecovered says", a[i].Seq, a[i].Source, a[i].Line, name))
				i++
				continue
			}
			return notes, &chain.Error{Problem: chain.Mismatch, Source: a[i].Source, Line: a[i].Line, Seq: a[i].Seq,
				Detail: fmt.Sprintf("the copy %s lacks this record", name)}
		case i >= len(a) || b[j].Seq < a[i].Seq:
			if lost(tr, b[j].Seq) {
				notes = append(notes, fmt.Sprintf("seq %d (%s:%d) is not in the trail: lost there in a crash, as its AuditRecovered says", b[j].Seq, b[j].Source, b[j].Line))
				j++
				continue
			}
			return notes, &chain.Error{Problem: chain.Mismatch, Source: b[j].Source, Line: b[j].Line, Seq: b[j].Seq,
				Detail: "the copy holds this record and the trail lacks it: records were cut from the trail"}
		case a[i].Hash != b[j].Hash:
			return notes, &chain.Error{Problem: chain.Mismatch, Source: b[j].Source, Line: b[j].Line, Seq: b[j].Seq,
				Detail: fmt.Sprintf("differs from the trail's record (%s:%d)", a[i].Source, a[i].Line)}
		}
		i, j = i+1, j+1
	}
	return notes, nil
}
