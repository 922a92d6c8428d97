package audit

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/vramward/vramward/host/trail"
)

// appendState appends the JSON of b, byte for byte what json.Marshal makes
// of it (TestAppendStateIsJSONMarshal holds the two together), to dst. A
// state is written under the log's lock before every checkpoint leaves,
// a CRITICAL emit's among them: encoding/json's reflection cost most of that
// write. Decoding stays with encoding/json (a start reads a slot once).
func appendState(dst []byte, b *stateBody) ([]byte, error) {
	dst = append(dst, `{"version":`...)
	dst = strconv.AppendInt(dst, int64(b.Version), 10)
	dst = appendUintField(dst, `,"gen":`, b.Gen)
	dst = appendStringField(dst, `,"origin":`, b.Origin)
	dst = appendUintField(dst, `,"epoch":`, b.Epoch)
	dst = appendStringField(dst, `,"key":`, b.Key)
	dst = appendUintField(dst, `,"seq":`, b.Seq)
	dst = appendUintField(dst, `,"reserved":`, b.Reserved)
	dst = appendBytes(append(dst, `,"prev":`...), b.Prev)
	dst = appendUintField(dst, `,"tree_size":`, b.TreeSize)
	dst = appendHashes(append(dst, `,"tree":`...), b.Tree)
	dst = appendUintField(dst, `,"epoch_events":`, b.EpochEvents)
	dst, err := appendTime(append(dst, `,"epoch_started":`...), b.EpochStarted)
	if err != nil {
		return nil, err
	}
	if b.EpochElapsed != 0 {
		dst = strconv.AppendInt(append(dst, `,"epoch_elapsed_ns":`...), int64(b.EpochElapsed), 10)
	}
	if !b.SavedAt.IsZero() {
		if dst, err = appendTime(append(dst, `,"saved_at":`...), b.SavedAt); err != nil {
			return nil, err
		}
	}
	dst = appendUintField(dst, `,"last_checkpoint_seq":`, b.LastCheckpointSeq)
	dst = appendBytes(append(dst, `,"last_checkpoint":`...), b.LastCheckpoint)
	dst = append(dst, `,"links":`...)
	if b.Links == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range b.Links {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendLink(dst, &b.Links[i])
		}
		dst = append(dst, ']')
	}
	if len(b.Witnesses) > 0 {
		dst = appendWitnesses(append(dst, `,"witnesses":`...), b.Witnesses)
	}
	if b.FirstKey != "" {
		dst = appendStringField(dst, `,"first_key":`, b.FirstKey)
	}
	dst = strconv.AppendBool(append(dst, `,"clean":`...), b.Clean)
	return append(dst, '}'), nil
}

func appendLink(dst []byte, l *trail.Link) []byte {
	dst = strconv.AppendUint(append(dst, `{"seq":`...), l.Seq, 10)
	dst = appendUintField(dst, `,"size":`, l.Size)
	dst = appendBytes(append(dst, `,"note":`...), l.Note)
	dst = appendHashes(append(dst, `,"seg":`...), l.Seg)
	return append(dst, '}')
}

func appendWitnesses(dst []byte, ws []trail.WitnessState) []byte {
	if ws == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i := range ws {
		if i > 0 {
			dst = append(dst, ',')
		}
		w := &ws[i]
		dst = appendStringField(append(dst, '{'), `"name":`, w.Name)
		dst = appendUintField(dst, `,"size":`, w.Size)
		dst = appendHashes(append(dst, `,"base":`...), w.Base)
		dst = appendHashes(append(dst, `,"tail":`...), w.Tail)
		if len(w.Pending) > 0 {
			dst = appendWitnesses(append(dst, `,"pending":`...), w.Pending)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendUintField(dst []byte, name string, v uint64) []byte {
	return strconv.AppendUint(append(dst, name...), v, 10)
}

func appendStringField(dst []byte, name, s string) []byte {
	return appendString(append(dst, name...), s)
}

// appendString quotes s as encoding/json does. The state's strings (an
// origin, keys in note form, witness names) are printable ASCII; anything
// else takes encoding/json's own path, escapes and all.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendBytes is a []byte as encoding/json writes it: standard base64, and
// null for nil.
func appendBytes(dst []byte, b []byte) []byte {
	if b == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

func appendHashes(dst []byte, hs [][]byte) []byte {
	if hs == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, h := range hs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendBytes(dst, h)
	}
	return append(dst, ']')
}

// appendTime is t as time.Time's MarshalJSON writes it, refusals (a year
// past 9999) included.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	q, err := t.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return append(dst, q...), nil
}
