package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/host/trail"
)

// What a start finds in the state dir and what it refuses: the log's state
// and its keys, audit.pub and log.key, each checked against the others, so
// that a lost, rolled back or swapped part is named instead of silently
// starting another log over an existing trail.

// openLog loads the log's state from dir, or starts a log (publishing its
// first public key in dir/audit.pub). After an unclean stop it returns the
// AuditRecovered record the new run must record first.
func openLog(dir, origin string, limits trail.Limits, log func(msg string, args ...any)) (*trail.Log, *chainStore, *auditRecovered, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("state dir: %w", err)
	}
	cs := &chainStore{dir: dir, buf: make([]byte, slotSize)}
	body, key, found, err := cs.load()
	if err != nil {
		return nil, nil, nil, err
	}
	if !found {
		for i := 0; i < 2; i++ {
			if _, err := os.Stat(cs.slotPath(i)); err == nil {
				return nil, nil, nil, fmt.Errorf("chain state in %s is unreadable (both slots fail their checksum); it is needed to continue the log", dir)
			}
		}
		pub := filepath.Join(dir, PublicKeyFile)
		if _, err := os.Stat(pub); err == nil {
			return nil, nil, nil, fmt.Errorf("%s exists but the chain state is gone: keep that key (it verifies the old trail), move it and the old trail away, and start again", pub)
		}
		// An identity key alone may have been provisioned before the first
		// start (for witnesses to pin); a checkpoint is a log's remains.
		if _, err := os.Stat(filepath.Join(dir, CheckpointFile)); err == nil {
			return nil, nil, nil, fmt.Errorf("%s holds the %s of a log whose chain state and public key are gone: restore them to continue that log, or move the state dir and the old trail away and start again", dir, CheckpointFile)
		}
		l, err := startLog(cs, origin, limits, log)
		return l, cs, nil, err
	}
	if body.Origin != origin {
		key.Destroy()
		return nil, nil, nil, fmt.Errorf("the state dir %s holds the log %q, and this config names worker %q (log %q): one state dir per worker", dir, body.Origin, origin[len("vramward/"):], origin)
	}
	st := trail.State{Origin: body.Origin, Epoch: body.Epoch, Seq: body.Seq, Prev: body.Prev, TreeSize: body.TreeSize, Tree: body.Tree,
		EpochEvents: body.EpochEvents, EpochStarted: body.EpochStarted, EpochElapsed: body.EpochElapsed, SavedAt: body.SavedAt, LastCheckpointSeq: body.LastCheckpointSeq,
		LastCheckpoint: body.LastCheckpoint, Links: body.Links, Witnesses: body.Witnesses}
	l, err := trail.Resume(st, key, limits)
	if err != nil {
		key.Destroy()
		return nil, nil, nil, fmt.Errorf("chain state in %s: %w", dir, err)
	}
	id, err := openIdentity(dir, origin)
	if err != nil {
		l.Destroy()
		return nil, nil, nil, err
	}
	l.SetIdentity(id)
	pub := filepath.Join(dir, PublicKeyFile)
	if cs.firstKey, err = checkPublic(pub, body.FirstKey, id.VerifierKey()); err != nil {
		l.Destroy()
		return nil, nil, nil, err
	}
	if err := publishIdentity(pub, id, log); err != nil {
		l.Destroy()
		return nil, nil, nil, err
	}
	cs.reserved = body.Reserved
	var rec *auditRecovered
	if !body.Clean {
		rec = &auditRecovered{reserved: body.Reserved}
	}
	return l, cs, rec, nil
}

// startLog begins a new log in cs's dir: its identity key, its first
// state (fdatasync'd), then audit.pub. A failure on the way removes what it
// made, so that the next start begins again instead of finding parts of a
// log that never held a record (and refusing them as a lost state).
func startLog(cs *chainStore, origin string, limits trail.Limits, log func(msg string, args ...any)) (l *trail.Log, err error) {
	dir := cs.dir
	made := []string{cs.slotPath(0), cs.slotPath(1), filepath.Join(dir, PublicKeyFile)}
	if _, err := os.Stat(filepath.Join(dir, IdentityFile)); errors.Is(err, os.ErrNotExist) {
		made = append(made, filepath.Join(dir, IdentityFile)) // not one provisioned before
	}
	defer func() {
		if err == nil {
			return
		}
		if l != nil {
			l.Destroy()
			l = nil
		}
		cs.close()
		for _, f := range made {
			if rerr := os.Remove(f); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("remove the unfinished log's %s: %w", f, rerr))
			}
		}
	}()
	l, err = trail.New(origin, limits)
	if err != nil {
		return nil, err
	}
	id, err := openIdentity(dir, origin)
	if err != nil {
		return l, err
	}
	l.SetIdentity(id)
	cs.firstKey = l.VerifierKey()
	if err := cs.save(l, false, true); err != nil {
		return l, err
	}
	pub := filepath.Join(dir, PublicKeyFile)
	if err := writePublic(pub, trail.PublicKeyText(l.VerifierKey(), id.VerifierKey())); err != nil {
		return l, err
	}
	log("a new audit log started: record its public keys off this node (fleet inventory, witnesses); `vramward audit verify -key` needs the first, witnesses pin the identity key",
		"public_key", l.VerifierKey(), "identity_key", id.VerifierKey(), "file", pub)
	return l, nil
}

// auditRecovered asks the bus to record AuditRecovered before anything else.
type auditRecovered struct{ reserved uint64 }

// openIdentity loads the log's identity key from dir, or makes it (a log
// started before identity keys existed gets one at its next start).
func openIdentity(dir, origin string) (*trail.PrivateKey, error) {
	path := filepath.Join(dir, IdentityFile)
	secret, err := os.ReadFile(path)
	if err == nil {
		k, err := trail.LoadKey(origin, secret)
		clear(secret)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	k, err := trail.GenerateKey(origin)
	if err != nil {
		return nil, err
	}
	buf := k.AppendSecret(nil)
	defer clear(buf)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		k.Destroy()
		return nil, fmt.Errorf("identity key: %w", err)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		k.Destroy()
		return nil, fmt.Errorf("identity key: %w", err)
	}
	return k, nil
}

// checkPublic refuses an audit.pub that no longer says what the log's
// state does: its first key (taken from audit.pub itself for a state saved
// before the state kept it) and its identity key. It returns the first key.
func checkPublic(path, firstKey, identity string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("public key file %s is gone while the log's state is here: restore it from the copy kept off the node (its first line is the first epoch's key, its second `identity KEY`)", path)
	}
	if err != nil {
		return "", fmt.Errorf("public key file: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	first := strings.TrimSpace(lines[0])
	restore := "restore it from the copy kept off the node"
	if firstKey != "" && first != firstKey {
		return "", fmt.Errorf("public key file %s names the first key %q, and the log's state %q: it was edited or replaced; %s", path, first, firstKey, restore)
	}
	if _, err := note.NewVerifier(first); err != nil {
		return "", fmt.Errorf("public key file %s: its first line is not a public key (%v); %s", path, err, restore)
	}
	for _, l := range lines[1:] {
		if k, ok := strings.CutPrefix(strings.TrimSpace(l), trail.IdentityPrefix); ok && k != identity {
			return "", fmt.Errorf("public key file %s names the identity key %q, and %s holds %q: one of them was replaced; %s", path, k, IdentityFile, identity, restore)
		}
	}
	return first, nil
}

// publishIdentity adds the identity key's line to a public key file written
// before identity keys existed.
func publishIdentity(path string, id *trail.PrivateKey, log func(msg string, args ...any)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("public key file: %w", err)
	}
	if strings.Contains(string(data), trail.IdentityPrefix) {
		return nil
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	tmp := path + ".new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := writePublic(tmp, trail.PublicKeyText(first, id.VerifierKey())); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("public key file: %w", err)
	}
	log("the audit log has an identity key now: record it off this node too (the second line of the public key file); witnesses pin it",
		"identity_key", id.VerifierKey(), "file", path)
	return syncDir(filepath.Dir(path))
}

func writePublic(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("public key file: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// HasLog says whether dir holds any part of an audit log's state: its slots,
// its public key file or its checkpoint (an identity key alone may be
// provisioned before the first start).
func HasLog(dir string) bool {
	for _, f := range []string{"chain.state.a", "chain.state.b", PublicKeyFile, CheckpointFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}
