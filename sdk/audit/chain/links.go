package chain

import (
	"bytes"
	"fmt"
	"os"

	"github.com/vramward/vramward/sdk/audit"
)

// Report summarises a trail whose links were checked.
type Report struct {
	Records  int
	FirstSeq uint64
	LastSeq  uint64
	LastType audit.Type
	LastHash []byte
	// Shortened lists the seqs a syslog sink sent shortened.
	Shortened []uint64
}

// VerifyLinks checks sources, in the order given, as one run of records:
// each record on its own (Check), seqs one after the other and every prev
// the hash of the record before. It is what a sink's own tests use to show
// they stored records intact and in order; it trusts nothing and vouches
// for nothing (`vramward audit verify` checks the signed tree as well). A
// record of type AuditRecovered may skip seqs and link to an earlier
// record: where it links is the trail verifier's to judge.
func VerifyLinks(sources ...Source) (Report, error) {
	var rep Report
	var prev []byte
	for _, src := range sources {
		err := ReadRecords(src, func(r Record) error {
			e := &r.Event
			if rep.Records == 0 {
				if e.Seq == 1 && len(e.Chain.Prev) != 0 {
					return r.Fail(Edited, "the first record of a trail links to a previous one")
				}
				rep.FirstSeq = e.Seq
			} else if e.Type != audit.AuditRecovered || e.Seq <= rep.LastSeq {
				switch last := rep.LastSeq; {
				case e.Seq == last:
					return r.Fail(Duplicate, "seq %d appears twice", e.Seq)
				case e.Seq < last:
					return r.Fail(Reordered, "follows seq %d", last)
				case e.Seq > last+1:
					return r.Fail(Missing, "records %d to %d are missing", last+1, e.Seq-1)
				case !bytes.Equal(e.Chain.Prev, prev):
					return r.Fail(Edited, "chain.prev does not match the hash of seq %d", last)
				}
			}
			if r.Shortened {
				rep.Shortened = append(rep.Shortened, e.Seq)
			}
			rep.Records++
			rep.LastSeq, rep.LastType, rep.LastHash = e.Seq, e.Type, r.Hash
			prev = r.Hash
			return nil
		})
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// VerifyLinkFiles is VerifyLinks over files, in the order given.
func VerifyLinkFiles(paths ...string) (Report, error) {
	var srcs []Source
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return Report{}, fmt.Errorf("open trail: %w", err)
		}
		defer f.Close()
		srcs = append(srcs, Source{Name: p, R: f})
	}
	return VerifyLinks(srcs...)
}
