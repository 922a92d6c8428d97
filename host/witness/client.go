package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Client submits checkpoints to one witness.
type Client struct {
	// URL is the witness's submission prefix (add-checkpoint is below it).
	URL  string
	HTTP *http.Client
	// Key verifies the cosignatures the witness answers with.
	Key note.Verifier
}

// ConflictError is a 409: the witness's latest cosigned size is not the
// old size the request named, or the same size has another root.
type ConflictError struct{ Size uint64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("the witness holds a checkpoint of tree size %d (409)", e.Size)
}

// StatusError is any other refusal.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("witness answered %d %s: %s", e.Code, http.StatusText(e.Code), short(strings.TrimSpace(e.Body)))
}

// Inconsistent says whether the witness refused the checkpoint as
// inconsistent with what it cosigned (a fork or a rewrite), as opposed to a
// request it could not take.
func (e *StatusError) Inconsistent() bool { return e.Code == http.StatusUnprocessableEntity }

// AddCheckpoint submits a request and returns the witness's cosignature
// lines, checked against its key.
func (c *Client) AddCheckpoint(ctx context.Context, req Request) ([]byte, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.URL, "/")+"/add-checkpoint", bytes.NewReader(req.Marshal()))
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusConflict:
		size, err := strconv.ParseUint(strings.TrimSuffix(string(body), "\n"), 10, 64)
		if err != nil || resp.Header.Get("Content-Type") != SizeContentType {
			return nil, &StatusError{Code: resp.StatusCode, Body: string(body)}
		}
		return nil, &ConflictError{Size: size}
	default:
		return nil, &StatusError{Code: resp.StatusCode, Body: string(body)}
	}
	if _, err := Cosigned(req.Checkpoint, body, c.Key); err != nil {
		return nil, err
	}
	return body, nil
}

// Cosigned checks that sigs (signature lines) hold a cosignature by key on
// the checkpoint note, and returns when the witness made it.
func Cosigned(checkpoint, sigs []byte, key note.Verifier) (time.Time, error) {
	msg := append(append([]byte(nil), checkpoint...), sigs...)
	n, err := note.Open(msg, note.VerifierList(key))
	if err != nil {
		return time.Time{}, fmt.Errorf("no cosignature by witness %s+%08x verifies", key.Name(), key.KeyHash())
	}
	for _, s := range n.Sigs {
		if s.Hash == key.KeyHash() && s.Name == key.Name() {
			return fnote.CoSigV1Timestamp(s)
		}
	}
	return time.Time{}, errors.New("cosignature missing")
}
