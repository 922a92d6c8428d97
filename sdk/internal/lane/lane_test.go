package lane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFramesRoundTrip(t *testing.T) {
	var b []byte
	b = Append(b, 1, Request, []byte("first"))
	b = Append(b, 2, Response, nil)
	b = Append(b, 1<<40, Status, bytes.Repeat([]byte{0xff}, 1000))
	r := NewReader(bytes.NewReader(b), 1000)
	for _, want := range []Frame{{1, Request, []byte("first")}, {2, Response, []byte{}}, {1 << 40, Status, bytes.Repeat([]byte{0xff}, 1000)}} {
		f, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if f.ID != want.ID || f.Kind != want.Kind || !bytes.Equal(f.Payload, want.Payload) {
			t.Fatalf("read %d/%d/%q, want %d/%d/%q", f.ID, f.Kind, f.Payload, want.ID, want.Kind, want.Payload)
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// A peer that is broken or hostile cannot make the reader allocate past
// its limit, take an unknown frame for a known one, or pass a cut frame
// off as whole.
func TestAHostilePeersFramesAreRefused(t *testing.T) {
	header := func(n uint32, kind byte) []byte {
		h := binary.BigEndian.AppendUint32(nil, n)
		h = binary.BigEndian.AppendUint64(h, 7)
		return append(h, kind)
	}
	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"over the limit", "declares 4294967295 payload bytes, over the limit of 64", header(1<<32-1, Response)},
		{"one past the limit", "declares 65 payload bytes", append(header(65, Response), make([]byte, 65)...)},
		{"no kind", "has kind 0", header(0, 0)},
		{"unknown kind", "has kind 4", header(0, 4)},
		{"cut payload", "frame 7: unexpected EOF", append(header(10, Status), "short"...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.in), 64).Read()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := NewReader(bytes.NewReader(header(3, Request)[:5]), 64).Read(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a cut header: %v, want io.ErrUnexpectedEOF", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(Append(nil, 1, Request, []byte("x")))
	f.Add(Append(Append(nil, 3, Status, []byte("\x08\x0e")), 4, Response, nil))
	f.Add([]byte{0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 1, 2})
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 128
		r := NewReader(bytes.NewReader(in), max)
		read := 0
		for {
			fr, err := r.Read()
			if err != nil {
				return
			}
			if len(fr.Payload) > max || fr.Kind < Request || fr.Kind > Status {
				t.Fatalf("read a frame out of bounds: kind %d, %d bytes", fr.Kind, len(fr.Payload))
			}
			// What was read re-encodes to the bytes it came from.
			enc := Append(nil, fr.ID, fr.Kind, fr.Payload)
			if !bytes.Equal(enc, in[read:read+len(enc)]) {
				t.Fatalf("frame at %d re-encodes differently", read)
			}
			read += len(enc)
		}
	})
}
