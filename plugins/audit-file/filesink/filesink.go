// Package filesink is the durable JSON-lines audit sink behind the
// audit-file plugin: one canonical event a line, appended to a 0600 file,
// fsync'd on every CRITICAL event, every Flush and every flush_interval,
// rotated by size without breaking the chain.
package filesink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/sandbox"
	"github.com/vramward/vramward/sdk/schema"
	"github.com/vramward/vramward/sdk/version"
)

// Defaults of the config schema.
const (
	DefaultMaxBytes      = 100 << 20
	DefaultMaxFiles      = 10
	DefaultFlushInterval = time.Second
)

// Schema is the sink's config block; plugins/audit-file/README.md documents
// it and a test parses the README's example against it.
var Schema = schema.Schema{
	{Name: "path", Type: schema.String, Required: true, Path: schema.WrittenFile,
		Description: "Absolute path of the trail file. Rotated files are path.1 (newest) to path.N."},
	{Name: "max_bytes", Type: schema.Int, Default: int64(DefaultMaxBytes),
		Description: "Rotate before a write would take the file past this size; 0 never rotates."},
	{Name: "max_files", Type: schema.Int, Default: int64(DefaultMaxFiles),
		Description: "Rotated files kept besides the live one; older ones are deleted."},
	{Name: "flush_interval", Type: schema.Duration, Default: DefaultFlushInterval,
		Description: "How often events that no CRITICAL event flushed are fsync'd."},
}

// dedupeWindow is how many recent (seq, chain hash) pairs are remembered to skip
// re-sent events. The host re-sends at most its in-flight batch after a
// restart, far fewer than this.
const dedupeWindow = 8192

// tailBytes is how much of the end of the trail is read at start to learn
// the last records written.
const tailBytes = 4 << 20

// Sink writes the trail. The SDK serialises every call, so it has no locks.
type Sink struct {
	log hclog.Logger

	path          string
	maxBytes      int64
	maxFiles      int
	flushInterval time.Duration

	f    file
	size int64 // bytes in the live file, all of them whole lines
	// dirtyTail is set when a failed write could not be cut back; the next
	// write cuts it before anything else is appended.
	dirtyTail bool
	unsynced  bool

	// replacedSeen is a replacement Flush found and recovered from; the
	// next Write returns it (writing nothing) so the host records it.
	replacedSeen *ReplacedError

	seen  *audit.ResendWindow
	buf   []byte
	added []int // indexes of the events of the current write that are new
}

// New returns an unconfigured sink.
func New(logger hclog.Logger) *Sink {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Sink{log: logger, seen: audit.NewResendWindow(dedupeWindow)}
}

// Info implements audit.Sink.
func (s *Sink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: "audit-file", Version: version.Version, Schema: Schema}
}

// SandboxRules implements sandbox.Sandboxed: after Configure the sink
// reaches its trail's directory and nothing else (it creates, rotates,
// saves and reopens files only there).
func (s *Sink) SandboxRules() sandbox.Rules {
	return sandbox.Rules{WriteDirs: []string{filepath.Dir(s.path)}}
}

// FlushInterval implements audit.PeriodicFlusher.
func (s *Sink) FlushInterval() time.Duration { return s.flushInterval }

// Configure implements audit.Sink: it checks the config, opens the trail
// and reads its tail.
func (s *Sink) Configure(_ context.Context, cfg schema.Values) error {
	var errs schema.Errors
	s.path = cfg.String("path")
	if !filepath.IsAbs(s.path) || filepath.Clean(s.path) != s.path || filepath.Base(s.path) == "." {
		errs = append(errs, &schema.FieldError{Field: "path", Msg: fmt.Sprintf("want a clean absolute file path, got %q", s.path)})
	}
	s.maxBytes = cfg.Int("max_bytes")
	if s.maxBytes < 0 {
		errs = append(errs, &schema.FieldError{Field: "max_bytes", Msg: fmt.Sprintf("must be 0 (no rotation) or positive, got %d", s.maxBytes)})
	}
	mf := cfg.Int("max_files")
	if mf < 1 || mf > 10000 {
		errs = append(errs, &schema.FieldError{Field: "max_files", Msg: fmt.Sprintf("must be between 1 and 10000, got %d", mf)})
	}
	s.maxFiles = int(mf)
	s.flushInterval = cfg.Duration("flush_interval")
	if s.flushInterval <= 0 {
		errs = append(errs, &schema.FieldError{Field: "flush_interval", Msg: "must be positive"})
	}
	if len(errs) > 0 {
		return errs
	}
	if err := s.prepareDir(); err != nil {
		return &schema.FieldError{Field: "path", Msg: err.Error()}
	}
	if err := s.open(); err != nil {
		return &schema.FieldError{Field: "path", Msg: err.Error()}
	}
	if err := s.readTail(); err != nil {
		_ = s.f.Close()
		return &schema.FieldError{Field: "path", Msg: err.Error()}
	}
	return nil
}

// prepareDir creates the trail's directory (0700) or checks that nobody but
// its owner can replace files in it.
func (s *Sink) prepareDir() error {
	dir := filepath.Dir(s.path)
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("directory %s is writable by group or others (mode %04o): the trail could be swapped; run chmod go-w on it", dir, st.Mode().Perm())
	}
	return nil
}

// open opens the live file for appending. It refuses a symlink and anything
// but a regular file, and tightens a looser mode to 0600.
func (s *Sink) open() error {
	f, err := openFile(s.path)
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("%s is a symbolic link; refusing to follow it", s.path)
	}
	if errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.EISDIR) {
		return fmt.Errorf("%s is not a regular file", s.path)
	}
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("stat: %w", err)
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return fmt.Errorf("%s is not a regular file (%s)", s.path, st.Mode().Type())
	}
	if st.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			_ = f.Close()
			return fmt.Errorf("chmod 0600: %w", err)
		}
		s.log.Warn("trail file mode tightened to 0600", "path", s.path, "was", fmt.Sprintf("%04o", st.Mode().Perm()))
	}
	s.f, s.size = f, st.Size()
	return nil
}

// readTail learns the last records already in the trail (the live file, or
// the newest rotated one when the live file is empty) so that events re-sent
// after a restart are not written twice. A last line without its newline
// was never acknowledged (the write that made it failed) and is cut off.
func (s *Sink) readTail() error {
	tail, err := readEnd(s.path, tailBytes)
	if err != nil {
		return err
	}
	if n := bytes.LastIndexByte(tail, '\n'); n != len(tail)-1 && len(tail) > 0 {
		partial := int64(len(tail) - n - 1)
		if err := s.f.Truncate(s.size - partial); err != nil {
			return fmt.Errorf("cut a partial last line: %w", err)
		}
		s.log.Warn("cut a partial last line left by a failed write", "path", s.path, "bytes", partial)
		s.size -= partial
		tail = tail[:n+1]
	}
	if len(tail) == 0 {
		if tail, err = readEnd(s.path+".1", tailBytes); err != nil {
			return err
		}
	}
	lines := bytes.Split(tail, []byte{'\n'})
	if len(tail) == tailBytes && len(lines) > 0 {
		lines = lines[1:] // the first is probably cut
	}
	for _, line := range lines {
		if len(line) == 0 {
			continue
		}
		e, err := audit.ParseJSON(line)
		if err != nil {
			continue // not ours to judge here; `vramward audit verify` will
		}
		s.seen.Add(e.Seq, e.Chain.Hash)
	}
	return nil
}

func readEnd(path string, n int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read tail of %s: %w", path, err)
	}
	return buf, nil
}

// Write implements audit.Sink: the batch goes to the kernel in one write, or
// nothing of it stays in the file.
func (s *Sink) Write(_ context.Context, records []audit.Record) error {
	if re := s.replacedSeen; re != nil {
		s.replacedSeen = nil
		return re
	}
	if s.f == nil {
		// A rotation or reopen failed half way; try again.
		if err := s.open(); err != nil {
			return fmt.Errorf("trail %s is not open: %w", s.path, err)
		}
	}
	if s.dirtyTail {
		if err := s.f.Truncate(s.size); err != nil {
			return fmt.Errorf("cut the partial line of an earlier failed write: %w", err)
		}
		s.dirtyTail = false
	}
	s.buf = s.buf[:0]
	s.added = s.added[:0]
	for i := range records {
		r := &records[i]
		if len(r.Chain.Hash) > 0 && s.seen.Has(r.Seq, r.Chain.Hash) {
			s.log.Debug("skipped a re-sent event already in the trail", "seq", r.Seq)
			continue
		}
		s.buf = append(s.buf, r.Line...)
		s.buf = append(s.buf, '\n')
		s.added = append(s.added, i)
	}
	if len(s.buf) == 0 {
		return nil
	}
	if s.maxBytes > 0 && s.size > 0 && s.size+int64(len(s.buf)) > s.maxBytes {
		if err := s.rotate(); err != nil {
			return fmt.Errorf("rotate %s: %w", s.path, err)
		}
	}
	n, err := s.f.Write(s.buf)
	if err != nil {
		if n > 0 {
			if terr := s.f.Truncate(s.size); terr != nil {
				s.dirtyTail = true
				s.log.Error("could not cut a partial write; will retry before the next write", "path", s.path, "error", terr)
			}
		}
		return fmt.Errorf("append %d events to %s: %w", len(s.added), s.path, err)
	}
	s.size += int64(n)
	s.unsynced = true
	for _, i := range s.added {
		s.seen.Add(records[i].Seq, records[i].Chain.Hash)
	}
	// Before this batch is acknowledged: is the file written still the
	// trail at path? One fstat and one lstat a batch.
	if why := s.replaced(); why != "" {
		return s.recoverReplaced(why)
	}
	return nil
}

// replaced says why the open file is no longer the trail at path (deleted,
// or another file at the path), or "" when it still is.
func (s *Sink) replaced() string {
	cur, err := s.f.Stat()
	if err != nil {
		return ""
	}
	if st, ok := cur.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
		return "the trail file was deleted while open"
	}
	onDisk, err := os.Lstat(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "the trail file was moved away"
	case err != nil:
		return ""
	case !os.SameFile(cur, onDisk):
		return "the trail file was replaced by another file"
	}
	return ""
}

// ReplacedError is a batch written into a trail file that was deleted or
// replaced before it was acknowledged. The sink has already saved what the
// deleted file held, reopened the path and written the batch again there;
// it refuses the batch anyway, so that the host records AuditSinkFailed and
// AuditSinkRecovered with the reason, and its re-send is skipped as a
// duplicate.
type ReplacedError struct {
	Path, Why, SavedTo string
}

func (e *ReplacedError) Error() string {
	msg := fmt.Sprintf("%s: %s; the batch was written again to a new file at the path", e.Path, e.Why)
	if e.SavedTo != "" {
		msg += "; what the deleted file held was saved to " + e.SavedTo
	}
	return msg
}

// salvageAndReopen saves a deleted file's content (its inode lives on
// while open) and reopens path.
func (s *Sink) salvageAndReopen(why string) (*ReplacedError, error) {
	rerr := &ReplacedError{Path: s.path, Why: why}
	cur, _ := s.f.Stat()
	if st, ok := cur.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
		saved, err := s.salvage()
		if err != nil {
			return nil, fmt.Errorf("%s: %s, and its content could not be saved: %w", s.path, why, err)
		}
		rerr.SavedTo = saved
	}
	if err := s.reopen(); err != nil {
		return nil, fmt.Errorf("%s: %w", rerr.Error(), err)
	}
	s.log.Error("trail file replaced under the sink; recovered", "path", s.path, "why", why, "saved_to", rerr.SavedTo)
	return rerr, nil
}

// recoverReplaced is salvageAndReopen for a batch just written into the
// replaced file: the batch (s.buf) is written again to the new one, durably.
func (s *Sink) recoverReplaced(why string) error {
	rerr, err := s.salvageAndReopen(why)
	if err != nil {
		return err
	}
	n, err := s.f.Write(s.buf)
	if err != nil {
		if n > 0 {
			s.dirtyTail = s.f.Truncate(s.size) != nil
		}
		return fmt.Errorf("%s: writing the batch again: %w", s.path, err)
	}
	s.size += int64(n)
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("%s: fsync after reopening: %w", s.path, err)
	}
	return rerr
}

// salvage copies the deleted file still open as s.f to path.deleted-TIME,
// fsync'd, and returns that name.
func (s *Sink) salvage() (string, error) {
	fd, ok := s.f.(interface{ Fd() uintptr })
	if !ok {
		return "", errors.New("the open file has no descriptor")
	}
	src, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", fd.Fd()))
	if err != nil {
		return "", err
	}
	defer src.Close()
	name := fmt.Sprintf("%s.deleted-%d", s.path, time.Now().UnixNano())
	dst, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", err
	}
	_, cerr := io.Copy(dst, src)
	serr := dst.Sync()
	if err := errors.Join(cerr, serr, dst.Close()); err != nil {
		return "", err
	}
	return name, syncDir(filepath.Dir(s.path))
}

// Flush implements audit.Sink: fsync. It also notices when the live file was
// deleted, moved away or replaced: it saves a deleted file's content, reopens
// the path, and has the next Write report it.
func (s *Sink) Flush(_ context.Context) error {
	if s.f == nil {
		return fmt.Errorf("trail %s is not open", s.path)
	}
	if s.unsynced {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", s.path, err)
		}
		s.unsynced = false
	}
	if why := s.replaced(); why != "" {
		rerr, err := s.salvageAndReopen(why)
		if err != nil {
			return err
		}
		s.replacedSeen = rerr
	}
	return nil
}

// Reopen implements audit.Reopener.
func (s *Sink) Reopen(_ context.Context) error { return s.reopen() }

func (s *Sink) reopen() error {
	if s.f != nil {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("fsync before reopen: %w", err)
		}
		if err := s.f.Close(); err != nil {
			return fmt.Errorf("close before reopen: %w", err)
		}
		s.f = nil
	}
	if err := s.open(); err != nil {
		return err
	}
	s.unsynced = false
	return syncDir(filepath.Dir(s.path))
}

// Close implements audit.Sink.
func (s *Sink) Close(_ context.Context) error {
	if s.f == nil {
		return nil
	}
	serr := s.f.Sync()
	cerr := s.f.Close()
	s.f = nil
	return errors.Join(serr, cerr)
}

// rotate moves path to path.1 (path.i to path.i+1, dropping the oldest) and
// opens a fresh live file. Every file ends on a whole line and the chain
// simply continues in the next file: `audit verify` takes them oldest first.
func (s *Sink) rotate() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	s.f = nil
	rotated := func(i int) string { return s.path + "." + strconv.Itoa(i) }
	if err := os.Remove(rotated(s.maxFiles)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for i := s.maxFiles - 1; i >= 1; i-- {
		if err := os.Rename(rotated(i), rotated(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(s.path, rotated(1)); err != nil {
		return err
	}
	if err := s.open(); err != nil {
		return err
	}
	s.log.Info("rotated the trail", "path", s.path, "kept", s.maxFiles)
	return syncDir(filepath.Dir(s.path))
}

// syncDir makes renames and creations in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// TrailFiles lists the files of the trail at path that exist, oldest first
// (path.N ... path.1, path): the order `vramward audit verify` wants them in.
func TrailFiles(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil, err
	}
	type rotated struct {
		n    int
		name string
	}
	var olds []rotated
	live := false
	for _, e := range entries {
		name := e.Name()
		if name == base {
			live = true
			continue
		}
		rest, ok := strings.CutPrefix(name, base+".")
		if n, err := strconv.Atoi(rest); ok && err == nil && n > 0 && strconv.Itoa(n) == rest {
			olds = append(olds, rotated{n, name})
		}
	}
	sort.Slice(olds, func(i, j int) bool { return olds[i].n > olds[j].n })
	var out []string
	for _, o := range olds {
		out = append(out, filepath.Join(dir, o.name))
	}
	if live {
		out = append(out, path)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no trail at %s: %w", path, os.ErrNotExist)
	}
	return out, nil
}
