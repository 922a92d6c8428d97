package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sys/unix"

	"github.com/vramward/vramward/host/trail"
)

// seqReservation is how far ahead of use seqs are reserved on disk. After a
// crash the log resumes past the reservation, so a seq is never reused even
// though the last seqs were not persisted one by one.
const seqReservation = 4096

// Files of the state dir.
const (
	PublicKeyFile  = "audit.pub"  // the log's first public key and its identity key (0644)
	IdentityFile   = "log.key"    // the identity key's secret (0600)
	CheckpointFile = "checkpoint" // the latest signed checkpoint (0644)
)

// stateBody is the persisted state but the key: JSON in a slot.
type stateBody struct {
	Version int    `json:"version"`
	Gen     uint64 `json:"gen"` // which slot is newer
	Origin  string `json:"origin"`
	Epoch   uint64 `json:"epoch"`
	// Key is the current epoch's public key: a slot's secret must match
	// it (the checksum does not cover the secret, so that no hash is ever
	// computed over it).
	Key               string               `json:"key"`
	Seq               uint64               `json:"seq"`
	Reserved          uint64               `json:"reserved"`
	Prev              []byte               `json:"prev"`
	TreeSize          uint64               `json:"tree_size"`
	Tree              [][]byte             `json:"tree"`
	EpochEvents       uint64               `json:"epoch_events"`
	EpochStarted      time.Time            `json:"epoch_started"`
	EpochElapsed      time.Duration        `json:"epoch_elapsed_ns,omitempty"`
	SavedAt           time.Time            `json:"saved_at,omitzero"`
	LastCheckpointSeq uint64               `json:"last_checkpoint_seq"`
	LastCheckpoint    []byte               `json:"last_checkpoint"`
	Links             []trail.Link         `json:"links"`
	Witnesses         []trail.WitnessState `json:"witnesses,omitempty"`
	// FirstKey is the first epoch's public key, as audit.pub publishes it:
	// a start refuses an audit.pub that says otherwise.
	FirstKey string `json:"first_key,omitempty"`
	// Clean is true only when written by a clean shutdown: the next start
	// continues the log; otherwise it records AuditRecovered first.
	Clean bool `json:"clean"`
}

// stateVersion 2 is the transparency log's state; 1 was the HMAC chain's.
const stateVersion = 2

// A slot is fixed-size: magic, the current epoch key's secret (raw, so that
// no hex or JSON copy of it is ever made), the body's length, the body, and
// a SHA-256 of the body. The secret is checked against the body's public
// key instead of being hashed.
var slotMagic = []byte("vramward-state-2\n")

const slotSize = 64 << 10

// chainStore keeps the log's state in two fixed-size slot files written
// alternately (state_dir/chain.state.a and .b), each with a checksum: a save
// torn by a power cut leaves the other slot intact. When the epoch changes
// both slots are rewritten, so that no slot keeps an ended epoch's key.
type chainStore struct {
	mu        sync.Mutex // one writer: the bus and the state writer both call in
	dir       string
	reserved  uint64
	gen       uint64 // generation of the newest slot written
	slots     [2]*os.File
	slotEpoch [2]uint64 // the epoch whose key each slot holds
	slotValid [2]bool
	dirty     [2]bool // written since the last fdatasync
	buf       []byte  // the slot being written; its key bytes are zeroed after each write
	firstKey  string  // the log's first public key (stateBody.FirstKey)
}

func (cs *chainStore) slotPath(i int) string {
	return filepath.Join(cs.dir, "chain.state."+string(rune('a'+i)))
}

// load reads both slots and returns the newest valid state and its key.
func (cs *chainStore) load() (stateBody, *trail.PrivateKey, bool, error) {
	var bodies [2]stateBody
	var keys [2]*trail.PrivateKey
	best := -1
	for i := 0; i < 2; i++ {
		data, err := os.ReadFile(cs.slotPath(i))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return stateBody{}, nil, false, fmt.Errorf("read chain state: %w", err)
		}
		body, secret, old := decodeSlot(data)
		if old {
			return stateBody{}, nil, false, fmt.Errorf("%s holds the state of the earlier HMAC chain format, which this version does not continue: move the state dir's chain.state.* and the old trail aside (keep them with their key to verify them with the earlier version) and start again", cs.slotPath(i))
		}
		if secret == nil {
			clear(data)
			continue
		}
		// The secret is read in place: a copy made here would pass through
		// registers of a thread outside trail's erasure (see trail/secret.go).
		k, err := trail.LoadKey(body.Origin, secret)
		clear(data)
		if err != nil || k.VerifierKey() != body.Key {
			if k != nil {
				k.Destroy()
			}
			continue // a torn slot: its key is not the one its body names
		}
		bodies[i], keys[i] = body, k
		cs.slotValid[i], cs.slotEpoch[i] = true, body.Epoch
		if best < 0 || body.Gen > bodies[best].Gen {
			best = i
		}
	}
	for i, k := range keys {
		if k != nil && i != best {
			k.Destroy()
		}
	}
	if best < 0 {
		return stateBody{}, nil, false, nil
	}
	cs.gen = bodies[best].Gen
	return bodies[best], keys[best], true, nil
}

// decodeSlot checks a slot and returns its body and its key's secret (a
// part of data; nil for a slot that does not check). old says the slot is in
// the earlier format.
func decodeSlot(data []byte) (body stateBody, secret []byte, old bool) {
	if bytes.HasPrefix(data, []byte(`{"version":1,`)) {
		return stateBody{}, nil, true
	}
	head := len(slotMagic) + trail.SecretSize + 4
	if len(data) < head+sha256.Size || !bytes.HasPrefix(data, slotMagic) {
		return stateBody{}, nil, false
	}
	n := int(binary.BigEndian.Uint32(data[head-4 : head]))
	if n > len(data)-head-sha256.Size {
		return stateBody{}, nil, false
	}
	sum := sha256.Sum256(data[head : head+n])
	if !bytes.Equal(sum[:], data[head+n:head+n+sha256.Size]) {
		return stateBody{}, nil, false
	}
	if json.Unmarshal(data[head:head+n], &body) != nil || body.Version != stateVersion {
		return stateBody{}, nil, false
	}
	return body, data[len(slotMagic) : len(slotMagic)+trail.SecretSize], false
}

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

// needsReservation reports whether seq is about to pass what is reserved.
func (cs *chainStore) needsReservation(seq uint64) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return seq >= cs.reserved
}

// save writes the log's state into the older slot, and into the other one
// too when it holds another epoch's key. With sync it is fdatasync'd before
// returning; without, it is in the page cache (a kill -9 keeps it) and
// sync makes it durable.
func (cs *chainStore) save(l *trail.Log, clean, sync bool) error {
	st := l.State()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	// cs.reserved is what a slot on disk reserves: it moves only once a
	// slot holding the new reservation is fdatasync'd, so a failed save
	// never lets seqs run past what a restart skips.
	reserved := cs.reserved
	if st.Seq >= reserved {
		reserved = st.Seq + seqReservation
		sync = true
	}
	for {
		cs.gen++
		i := int(cs.gen % 2)
		if err := cs.writeSlot(i, l, st, reserved, clean, sync); err != nil {
			// The slot may be torn: the next save goes to it again, and
			// the other, whole one is kept.
			cs.gen--
			return err
		}
		if sync {
			cs.reserved = reserved
		}
		if other := 1 - i; !cs.slotValid[other] || cs.slotEpoch[other] == st.Epoch {
			return nil
		}
		// The other slot holds an ended epoch's key: overwrite it too.
		sync = true
	}
}

func (cs *chainStore) writeSlot(i int, l *trail.Log, st trail.State, reserved uint64, clean, sync bool) error {
	body, err := json.Marshal(stateBody{Version: stateVersion, Gen: cs.gen, Origin: st.Origin, Epoch: st.Epoch, Key: l.VerifierKey(), Seq: st.Seq, Reserved: reserved,
		Prev: st.Prev, TreeSize: st.TreeSize, Tree: st.Tree, EpochEvents: st.EpochEvents, EpochStarted: st.EpochStarted,
		EpochElapsed: st.EpochElapsed, SavedAt: st.SavedAt, LastCheckpointSeq: st.LastCheckpointSeq, LastCheckpoint: st.LastCheckpoint, Links: st.Links, Witnesses: st.Witnesses, FirstKey: cs.firstKey, Clean: clean})
	if err != nil {
		return err
	}
	b := cs.buf[:0]
	b = append(b, slotMagic...)
	b = l.Key().AppendSecret(b)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	sum := sha256.Sum256(body)
	b = append(b, sum[:]...)
	defer clear(cs.buf[len(slotMagic) : len(slotMagic)+trail.SecretSize])
	if len(b) > slotSize {
		return fmt.Errorf("save chain state: %d bytes exceed the slot", len(b))
	}
	// Only the bytes in use are written (the checksum bounds them), so a
	// save dirties one or two pages; a new slot file gets its whole size
	// once, so that a save never changes a file's length (no metadata to
	// flush with it).
	n := len(b)
	if cs.slots[i] == nil {
		f, err := os.OpenFile(cs.slotPath(i), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("save chain state: %w", err)
		}
		cs.slots[i] = f
		if fi, err := f.Stat(); err == nil && fi.Size() != slotSize {
			clear(cs.buf[n:slotSize])
			n = slotSize
			sync = true // a new slot file: its size and name must be durable too
			defer syncDir(cs.dir)
		}
	}
	if err := writeAt(cs.slots[i], cs.buf[:n]); err != nil {
		return fmt.Errorf("save chain state: %w", err)
	}
	cs.dirty[i] = true
	if sync {
		if err := fdatasync(int(cs.slots[i].Fd())); err != nil {
			return fmt.Errorf("save chain state: fdatasync: %w", err)
		}
		cs.dirty[i] = false
	}
	cs.slotValid[i], cs.slotEpoch[i] = true, st.Epoch
	return nil
}

// fdatasyncHook, when set, replaces unix.Fdatasync, and writeHook is
// asked before each slot write (an error it returns stands for the
// disk's): tests stall or fail the state's disk with them.
var (
	fdatasyncHook atomic.Pointer[func(int) error]
	writeHook     atomic.Pointer[func() error]
)

func writeAt(f *os.File, b []byte) error {
	if h := writeHook.Load(); h != nil {
		if err := (*h)(); err != nil {
			return &os.PathError{Op: "write", Path: f.Name(), Err: err}
		}
	}
	_, err := f.WriteAt(b, 0)
	return err
}

func fdatasync(fd int) error {
	if h := fdatasyncHook.Load(); h != nil {
		return (*h)(fd)
	}
	return unix.Fdatasync(fd)
}

// sync makes every slot write so far durable: one fdatasync per slot
// written since the last.
func (cs *chainStore) sync() error {
	cs.mu.Lock()
	var files []*os.File
	for i, f := range cs.slots {
		if f != nil && cs.dirty[i] {
			files = append(files, f)
			cs.dirty[i] = false
		}
	}
	cs.mu.Unlock()
	for _, f := range files {
		if err := fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("save chain state: fdatasync: %w", err)
		}
	}
	return nil
}

// writeCheckpoint replaces state_dir/checkpoint with the latest signed
// checkpoint, for a witness or a cron job to copy off the node.
func (cs *chainStore) writeCheckpoint(note []byte) error {
	path := filepath.Join(cs.dir, CheckpointFile)
	tmp := path + ".new"
	if err := os.WriteFile(tmp, note, 0o644); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}

// close releases the slot files.
func (cs *chainStore) close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for i, f := range cs.slots {
		if f != nil {
			f.Close()
			cs.slots[i] = nil
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
