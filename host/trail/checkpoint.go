package trail

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a signed tree head in the C2SP tlog-checkpoint format: the
// origin, the tree size and the root hash, then two extension lines of this
// log: the epoch whose key signs it and, at an epoch's end, the next
// epoch's public key.
//
//	vramward/worker-1
//	1042
//	<base64 root>
//	epoch 3
//	next-key vramward/worker-1+1a2b3c4d+AbC...
//
//	— vramward/worker-1 <base64 key hash and signature>
type Checkpoint struct {
	Origin  string
	Size    uint64
	Root    []byte
	Epoch   uint64
	NextKey string // a verifier key, or ""
	// Note is the whole signed note.
	Note []byte
}

// body is the checkpoint's text, which the signature covers.
func (c *Checkpoint) body() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%d\n%s\nepoch %d\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root), c.Epoch)
	if c.NextKey != "" {
		fmt.Fprintf(&b, "next-key %s\n", c.NextKey)
	}
	return b.String()
}

// Sign signs the checkpoint with each signer (the epoch key, then the log's
// identity key) and fills Note.
func (c *Checkpoint) Sign(signers ...note.Signer) error {
	msg, err := note.Sign(&note.Note{Text: c.body()}, signers...)
	if err != nil {
		return fmt.Errorf("sign checkpoint: %w", err)
	}
	c.Note = msg
	return nil
}

// maxNoteBytes bounds a checkpoint note; a real one is a few hundred bytes.
const maxNoteBytes = 4096

// ParseCheckpoint reads a checkpoint note without checking its signature.
func ParseCheckpoint(msg []byte) (Checkpoint, error) {
	if len(msg) > maxNoteBytes {
		return Checkpoint{}, fmt.Errorf("checkpoint of %d bytes (at most %d)", len(msg), maxNoteBytes)
	}
	text, _, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return Checkpoint{}, errors.New("not a signed note (no blank line before the signatures)")
	}
	lines := strings.Split(string(text), "\n")
	if len(lines) < 4 {
		return Checkpoint{}, errors.New("a checkpoint has an origin, a size, a root hash and an epoch line")
	}
	c := Checkpoint{Origin: lines[0], Note: msg}
	var err error
	if c.Size, err = strconv.ParseUint(lines[1], 10, 64); err != nil || strconv.FormatUint(c.Size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("tree size %q is not a decimal number", short(lines[1]))
	}
	if c.Root, err = base64.StdEncoding.DecodeString(lines[2]); err != nil || len(c.Root) != 32 {
		return Checkpoint{}, fmt.Errorf("root hash %q is not 32 bytes in base64", short(lines[2]))
	}
	ep, ok := strings.CutPrefix(lines[3], "epoch ")
	if c.Epoch, err = strconv.ParseUint(ep, 10, 64); !ok || err != nil || strconv.FormatUint(c.Epoch, 10) != ep {
		return Checkpoint{}, fmt.Errorf("line %q is not \"epoch N\"", short(lines[3]))
	}
	switch rest := lines[4:]; {
	case len(rest) == 0:
	case len(rest) == 1 && strings.HasPrefix(rest[0], "next-key "):
		c.NextKey = strings.TrimPrefix(rest[0], "next-key ")
		if _, err := note.NewVerifier(c.NextKey); err != nil {
			return Checkpoint{}, fmt.Errorf("next-key: %w", err)
		}
	default:
		return Checkpoint{}, fmt.Errorf("unexpected line %q", short(rest[0]))
	}
	if c.body() != string(text)+"\n" {
		return Checkpoint{}, errors.New("checkpoint text is not in its one spelling")
	}
	return c, nil
}

// Open checks the note's signature by v and parses it.
func Open(msg []byte, v note.Verifier) (Checkpoint, error) {
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return Checkpoint{}, fmt.Errorf("not signed by key %s+%08x", v.Name(), v.KeyHash())
		}
		return Checkpoint{}, err
	}
	return ParseCheckpoint(msg)
}

// SignerOf returns the key name and hash of the signatures on msg, for a
// message that says which key a checkpoint claims.
func SignerOf(msg []byte) string {
	_, sigs, ok := bytes.Cut(msg, []byte("\n\n"))
	if !ok {
		return "none"
	}
	first, _, _ := bytes.Cut(sigs, []byte("\n"))
	return short(string(first))
}
