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
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vramward/vramward/host/trail"
)

// seqReservation is how far ahead of use seqs are reserved on disk. After a
// crash the log resumes past the reservation, so a seq is never reused even
// though the last seqs were not persisted one by one. A new reservation is
// written when half of the last is used and made durable in the background,
// so that seqs reach it only in the rare case that its fdatasync has not
// finished by then: only that save waits for the disk under the bus's lock.
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
// torn by a power cut leaves the other slot intact. That holds only while
// one slot is durable: a save goes to the other slot only once the last
// one's fdatasync is done, and until then overwrites the slot not yet
// durable. When the epoch changes, the new state goes to one slot and,
// once that is durable, sync copies it over the other, so that no slot
// keeps an ended epoch's key for longer than one fdatasync.
type chainStore struct {
	mu  sync.Mutex // one writer: the bus and the state writer both call in
	dir string
	// reserved is what a durable slot reserves: seqs are handed out below
	// it only. written is the highest reservation written to a slot, and
	// slotReserved what each slot holds.
	reserved     uint64
	written      uint64
	slotReserved [2]uint64
	gen          uint64 // generation of the newest slot written
	slots        [2]*os.File
	slotEpoch    [2]uint64 // the epoch whose key each slot holds
	slotValid    [2]bool
	slotGen      [2]uint64
	// unsynced says a slot was written since its last fdatasync (a cut
	// may tear it); writes counts its writes, so that an fdatasync begun
	// before the last write does not clear it.
	unsynced [2]bool
	writes   [2]uint64
	buf      []byte // the slot being written; its key bytes are zeroed after each write
	body     []byte // the body's encoding, reused (it holds no secret)
	firstKey string // the log's first public key (stateBody.FirstKey)
	// closed: the store writes nothing more, not even the checkpoint
	// file, which the state writer may still be about to refresh. A
	// test's crash sets it alone, leaving the descriptors to a writer
	// that may be inside an fdatasync, as a killed process would.
	closed bool
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
		cs.slotValid[i], cs.slotEpoch[i], cs.slotGen[i] = true, body.Epoch, body.Gen
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

// needsReservation reports whether seq is about to pass what is reserved
// durably: the save for it must be fdatasync'd before anything leaves.
func (cs *chainStore) needsReservation(seq uint64) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return seq >= cs.reserved
}

// wantsReservation reports whether seq used half of the newest reservation
// written: a save now reserves further, ahead of need.
func (cs *chainStore) wantsReservation(seq uint64) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return seq+seqReservation/2 >= max(cs.reserved, cs.written)
}

// save writes the log's state into the slot target names. With sync it is
// fdatasync'd before returning; without, it is in the page cache (a kill
// -9 keeps it) and sync makes it durable.
func (cs *chainStore) save(l *trail.Log, clean, sync bool) error {
	st := l.State()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return errStoreClosed
	}
	// cs.reserved is what a slot on disk reserves: it moves only once a
	// slot holding the new reservation is fdatasync'd (here with sync, or
	// by the state writer), so a failed save never lets seqs run past what
	// a restart skips.
	reserved := max(cs.reserved, cs.written)
	if st.Seq+seqReservation/2 >= reserved {
		reserved = st.Seq + seqReservation
	}
	if st.Seq >= cs.reserved {
		sync = true
	}
	cs.gen++
	i := cs.target()
	if err := cs.writeSlot(i, l, st, reserved, clean, sync); err != nil {
		// The slot may be torn: the next save goes to it again, and the
		// other, whole one is kept.
		cs.gen--
		return err
	}
	cs.slotReserved[i], cs.written = reserved, max(cs.written, reserved)
	if sync {
		cs.reserved = max(cs.reserved, reserved)
	}
	return nil
}

// target is the slot the next save writes: one not durable yet if there
// is one (the other is the whole copy a cut leaves), else the older.
// cs.mu is held.
func (cs *chainStore) target() int {
	for i, u := range cs.unsynced {
		if u {
			return i
		}
	}
	for i, valid := range cs.slotValid {
		if !valid {
			return i
		}
	}
	if cs.slotGen[0] <= cs.slotGen[1] {
		return 0
	}
	return 1
}

func (cs *chainStore) writeSlot(i int, l *trail.Log, st trail.State, reserved uint64, clean, sync bool) error {
	body, err := appendState(cs.body[:0], &stateBody{Version: stateVersion, Gen: cs.gen, Origin: st.Origin, Epoch: st.Epoch, Key: l.VerifierKey(), Seq: st.Seq, Reserved: reserved,
		Prev: st.Prev, TreeSize: st.TreeSize, Tree: st.Tree, EpochEvents: st.EpochEvents, EpochStarted: st.EpochStarted,
		EpochElapsed: st.EpochElapsed, SavedAt: st.SavedAt, LastCheckpointSeq: st.LastCheckpointSeq, LastCheckpoint: st.LastCheckpoint, Links: st.Links, Witnesses: st.Witnesses, FirstKey: cs.firstKey, Clean: clean})
	if err != nil {
		return fmt.Errorf("save chain state: %w", err)
	}
	cs.body = body
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
	// From here the slot may be torn until an fdatasync completes.
	cs.unsynced[i], cs.slotValid[i] = true, false
	cs.writes[i]++
	if err := writeAt(cs.slots[i], cs.buf[:n]); err != nil {
		return fmt.Errorf("save chain state: %w", err)
	}
	if sync {
		if err := fdatasync(int(cs.slots[i].Fd())); err != nil {
			return fmt.Errorf("save chain state: fdatasync: %w", err)
		}
		cs.unsynced[i] = false
	}
	cs.slotValid[i], cs.slotEpoch[i], cs.slotGen[i] = true, st.Epoch, cs.gen
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
	type pending struct {
		slot     int
		f        *os.File
		writes   uint64
		reserved uint64
	}
	cs.mu.Lock()
	if cs.closed {
		cs.mu.Unlock()
		return errStoreClosed
	}
	var todo []pending
	for i, f := range cs.slots {
		if f != nil && cs.unsynced[i] {
			todo = append(todo, pending{i, f, cs.writes[i], cs.slotReserved[i]})
		}
	}
	cs.mu.Unlock()
	for _, p := range todo {
		if err := fdatasync(int(p.f.Fd())); err != nil {
			return fmt.Errorf("save chain state: fdatasync: %w", err)
		}
		cs.mu.Lock()
		// A save that came during the fdatasync may have left the slot
		// torn: then it is not durable yet, nor what it reserves.
		if cs.writes[p.slot] == p.writes {
			cs.unsynced[p.slot] = false
			cs.reserved = max(cs.reserved, p.reserved)
		}
		cs.mu.Unlock()
	}
	cs.mu.Lock()
	o, writes, err := cs.eraseEndedEpoch()
	cs.mu.Unlock()
	if o < 0 || err != nil {
		return err
	}
	if err := fdatasync(int(cs.slots[o].Fd())); err != nil {
		return fmt.Errorf("erase the ended epoch's state: fdatasync: %w", err)
	}
	cs.mu.Lock()
	if cs.writes[o] == writes {
		cs.unsynced[o] = false
	}
	cs.mu.Unlock()
	return nil
}

// eraseEndedEpoch copies the newest slot over the other when the other
// still holds an ended epoch's key and the newest is durable (not before:
// a cut would then leave no whole slot), and not once the store closed. It returns the slot it wrote, -1
// for none, and its write count, for sync to make it durable outside
// cs.mu (which is held): a save waits for no disk but its own.
func (cs *chainStore) eraseEndedEpoch() (int, uint64, error) {
	n := 0
	if cs.slotGen[1] > cs.slotGen[0] {
		n = 1
	}
	o := 1 - n
	if cs.closed || !cs.slotValid[n] || cs.unsynced[n] || !cs.slotValid[o] || cs.slotEpoch[o] == cs.slotEpoch[n] || cs.slots[o] == nil || cs.slots[n] == nil {
		return -1, 0, nil
	}
	buf := cs.buf[:slotSize]
	defer clear(buf)
	if _, err := cs.slots[n].ReadAt(buf, 0); err != nil {
		return -1, 0, fmt.Errorf("erase the ended epoch's state: read %s: %w", cs.slotPath(n), err)
	}
	cs.unsynced[o], cs.slotValid[o] = true, false
	cs.writes[o]++
	if err := writeAt(cs.slots[o], buf); err != nil {
		return -1, 0, fmt.Errorf("erase the ended epoch's state: %w", err)
	}
	cs.slotValid[o], cs.slotEpoch[o], cs.slotGen[o], cs.slotReserved[o] = true, cs.slotEpoch[n], cs.slotGen[n], cs.slotReserved[n]
	return o, cs.writes[o], nil
}

// writeCheckpoint replaces state_dir/checkpoint with the latest signed
// checkpoint, for a witness or a cron job to copy off the node.
func (cs *chainStore) writeCheckpoint(note []byte) error {
	cs.mu.Lock()
	closed := cs.closed
	cs.mu.Unlock()
	if closed {
		return errStoreClosed
	}
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

var errStoreClosed = errors.New("the log's state store is closed")

// close releases the slot files.
func (cs *chainStore) close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.closed = true
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
