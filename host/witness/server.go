package witness

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// GenerateKey makes a witness key named name: the private key (signed-note
// "PRIVATE+KEY+..." form, kept by the witness alone) and the public key in
// the tlog-cosignature/v1 form that verifiers and logs pin.
func GenerateKey(name string) (skey, vkey string, err error) {
	skey, v1, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", err
	}
	vkey, err = fnote.VKeyToCosignatureV1(v1)
	return skey, vkey, err
}

// NewVerifier reads a witness's public key (either form).
func NewVerifier(vkey string) (note.Verifier, error) {
	return fnote.NewVerifierForCosignatureV1(strings.TrimSpace(vkey))
}

// ServerOptions configure a witness.
type ServerOptions struct {
	// Key is the witness's private key (GenerateKey's skey).
	Key string
	// StateDir keeps the latest cosigned checkpoint of each log, written
	// and fsync'd before the witness answers.
	StateDir string
	// Logs are the logs the witness cosigns for: by origin, the keys whose
	// signature a checkpoint must carry (a node's identity key).
	Logs   map[string][]note.Verifier
	Logger hclog.Logger
}

// Server is a witness: an http.Handler for POST /add-checkpoint and, to
// let operators fetch what it cosigned, GET /checkpoint?origin=ORIGIN.
type Server struct {
	opts   ServerOptions
	signer *fnote.Signer
	mu     sync.Mutex // checks a request against latest and persists it, atomically
	latest map[string]cosigned
}

type cosigned struct {
	size uint64
	root []byte
	note []byte // the log's checkpoint with this witness's cosignature
}

// NewServer loads the witness's state.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	signer, err := fnote.NewSignerForCosignatureV1(strings.TrimSpace(opts.Key))
	if err != nil {
		return nil, fmt.Errorf("witness key: %w", err)
	}
	if len(opts.Logs) == 0 {
		return nil, errors.New("witness: no log to cosign for")
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("witness state: %w", err)
	}
	s := &Server{opts: opts, signer: signer, latest: map[string]cosigned{}}
	for origin := range opts.Logs {
		data, err := os.ReadFile(s.statePath(origin))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("witness state: %w", err)
		}
		var c log.Checkpoint
		if _, err := c.Unmarshal(data); err != nil || c.Origin != origin {
			return nil, fmt.Errorf("witness state %s: not a checkpoint of %s", s.statePath(origin), origin)
		}
		s.latest[origin] = cosigned{size: c.Size, root: c.Hash, note: data}
	}
	return s, nil
}

// Name is the witness's key name; VerifierKey its public key.
func (s *Server) Name() string { return s.signer.Name() }

func (s *Server) statePath(origin string) string {
	return filepath.Join(s.opts.StateDir, url.PathEscape(origin)+".checkpoint")
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/add-checkpoint" && r.Method == http.MethodPost:
		s.addCheckpoint(w, r)
	case r.URL.Path == "/checkpoint" && r.Method == http.MethodGet:
		s.mu.Lock()
		c, ok := s.latest[r.URL.Query().Get("origin")]
		s.mu.Unlock()
		if !ok {
			http.Error(w, "no checkpoint cosigned for that origin", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(c.note)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func (s *Server) addCheckpoint(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "request too large or unreadable", http.StatusBadRequest)
		return
	}
	req, err := ParseRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	origin, _, _ := strings.Cut(string(req.Checkpoint), "\n")
	keys, ok := s.opts.Logs[origin]
	if !ok {
		http.Error(w, "unknown log origin", http.StatusNotFound)
		return
	}
	n, err := note.Open(req.Checkpoint, note.VerifierList(keys...))
	if err != nil {
		http.Error(w, "no signature by a key of this log verifies", http.StatusForbidden)
		return
	}
	var c log.Checkpoint
	if _, err := c.Unmarshal([]byte(n.Text)); err != nil || len(c.Hash) != 32 {
		http.Error(w, "not a checkpoint", http.StatusBadRequest)
		return
	}
	if req.OldSize > c.Size {
		http.Error(w, "old size is beyond the checkpoint's size", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.latest[origin]
	refuse := func(code int, why string) {
		// Evidence of a log's misbehaviour: it signed this.
		s.opts.Logger.Warn("refused a checkpoint", "origin", origin, "size", c.Size, "old", req.OldSize, "latest", prev.size, "status", code, "why", why,
			"checkpoint", string(req.Checkpoint))
		if code == http.StatusConflict {
			w.Header().Set("Content-Type", SizeContentType)
			w.WriteHeader(code)
			fmt.Fprintf(w, "%d\n", prev.size)
			return
		}
		http.Error(w, why, code)
	}
	switch {
	case req.OldSize != prev.size:
		refuse(http.StatusConflict, "old size is not the latest cosigned size")
		return
	case req.OldSize == c.Size:
		if prev.root != nil && !bytes.Equal(prev.root, c.Hash) || prev.root == nil && c.Size != 0 {
			refuse(http.StatusConflict, "same size, another root: a fork")
			return
		}
	case req.OldSize == 0:
		if len(req.Proof) != 0 {
			refuse(http.StatusUnprocessableEntity, "a proof from size 0 must be empty")
			return
		}
	default:
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, req.OldSize, c.Size, req.Proof, prev.root, c.Hash); err != nil {
			refuse(http.StatusUnprocessableEntity, "the consistency proof does not verify: "+err.Error())
			return
		}
	}
	signed, err := note.Sign(&note.Note{Text: n.Text}, s.signer)
	if err != nil {
		http.Error(w, "cosign: "+err.Error(), http.StatusInternalServerError)
		return
	}
	_, sig, _ := bytes.Cut(signed, []byte("\n\n"))
	full := append(append([]byte(nil), req.Checkpoint...), sig...)
	if err := writeFileSync(s.statePath(origin), full); err != nil {
		s.opts.Logger.Error("could not persist a cosigned checkpoint; it is not cosigned", "origin", origin, "error", err)
		http.Error(w, "persist: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.latest[origin] = cosigned{size: c.Size, root: c.Hash, note: full}
	s.opts.Logger.Info("cosigned", "origin", origin, "size", c.Size)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(sig)
}

// writeFileSync replaces path with data durably: a temporary file,
// fsync'd, renamed over path, and the directory fsync'd.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".new." + strconv.Itoa(os.Getpid())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
