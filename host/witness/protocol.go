// Package witness speaks the C2SP tlog-witness protocol (c2sp.org/tlog-witness)
// for the nodes' audit logs: Server is a witness that cosigns a node's
// checkpoints (tlog-cosignature/v1) only while each is consistent with the
// last one it cosigned, and Client is the host's side that submits them.
//
// A witness runs off the node (on the relay, say). Whoever takes a node
// holds every key on it and can sign anything, but cannot make a witness
// cosign a rewritten or rolled-back history: what a witness cosigned stays
// fixed, and `vramward audit verify -witness-key` holds the trail to it.
package witness

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxProofLines is the protocol's bound on consistency proof lines.
const maxProofLines = 63

// maxBody bounds an add-checkpoint request: a note of a few signatures and
// 63 hashes fit many times over.
const maxBody = 64 << 10

// SizeContentType is the type of a 409 answer's body: the witness's size.
const SizeContentType = "text/x.tlog.size"

// Request is an add-checkpoint request: the size of the checkpoint the
// client believes the witness holds, the consistency proof from it, and
// the new signed checkpoint.
type Request struct {
	OldSize    uint64
	Proof      [][]byte
	Checkpoint []byte
}

// Marshal writes the request body.
func (r *Request) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", r.OldSize)
	for _, h := range r.Proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(r.Checkpoint)
	return b.Bytes()
}

// ParseRequest reads a request body.
func ParseRequest(body []byte) (Request, error) {
	var r Request
	head, note, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return r, errors.New("no empty line before the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	size, ok := strings.CutPrefix(lines[0], "old ")
	n, err := strconv.ParseUint(size, 10, 64)
	if !ok || err != nil || strconv.FormatUint(n, 10) != size {
		return r, fmt.Errorf("first line %q is not \"old <size>\"", short(lines[0]))
	}
	r.OldSize = n
	if len(lines)-1 > maxProofLines {
		return r, fmt.Errorf("%d consistency proof lines (at most %d)", len(lines)-1, maxProofLines)
	}
	for _, l := range lines[1:] {
		h, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(h) != 32 {
			return r, fmt.Errorf("proof line %q is not a base64 SHA-256 hash", short(l))
		}
		r.Proof = append(r.Proof, h)
	}
	r.Checkpoint = note
	return r, nil
}

func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
