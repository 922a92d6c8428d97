package audit

import (
	"bytes"
	"crypto/sha256"
	"strings"

	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vramward/vramward/sdk/audit/chain"
)

// seqReservation is how far ahead of use seqs are reserved on disk. After a
// crash the chain resumes past the reservation, so a seq is never reused even
// though the last seqs were not persisted one by one.
const seqReservation = 4096

// stateFile is the chain's persisted state, state_dir/chain.state.
type stateFile struct {
	Version      int       `json:"version"`
	Gen          uint64    `json:"gen"` // which slot is newer
	Epoch        uint64    `json:"epoch"`
	Key          string    `json:"key"` // the current epoch's key only
	Seq          uint64    `json:"seq"`
	Reserved     uint64    `json:"reserved"`
	Prev         string    `json:"prev"`
	EpochStarted time.Time `json:"epoch_started"`
	EpochEvents  uint64    `json:"epoch_events"`
	// Clean is true only when written by a clean shutdown: the next start
	// continues the chain; otherwise it starts a new linked segment.
	Clean bool `json:"clean"`
}

// chainStore keeps the chain state in two fixed-size slot files written
// alternately (state_dir/chain.state.a and .b), each with a checksum: one
// fdatasync per save, no rename and no directory sync, and a save torn by a
// power cut leaves the other slot intact.
type chainStore struct {
	// mu makes the store its one writer: the bus (reservations, epoch
	// changes, shutdown) and the state writer (CRITICAL events) both save.
	mu       sync.Mutex
	dir      string
	reserved uint64
	gen      uint64 // generation of the newest slot written
	slots    [2]*os.File
	// last is the newest state written, so that a save arriving late with
	// an older one is dropped instead of taking the disk back: an older
	// state may hold an ended epoch's key.
	last    chain.State
	written bool
}

// slotSize is the fixed size of a slot; the state is far smaller, and a
// fixed size means a save never changes the file's length (no metadata to
// flush).
const slotSize = 1024

func (cs *chainStore) slotPath(i int) string {
	return filepath.Join(cs.dir, "chain.state."+string(rune('a'+i)))
}

// load reads both slots and returns the newest valid state.
func (cs *chainStore) load() (stateFile, bool, error) {
	var best stateFile
	found := false
	for i := 0; i < 2; i++ {
		data, err := os.ReadFile(cs.slotPath(i))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return stateFile{}, false, fmt.Errorf("read chain state: %w", err)
		}
		sf, ok := decodeSlot(data)
		if ok && (!found || sf.Gen > best.Gen) {
			best, found = sf, true
		}
	}
	if found {
		cs.gen = best.Gen
	}
	return best, found, nil
}

func decodeSlot(data []byte) (stateFile, bool) {
	body, sum, ok := strings.Cut(strings.TrimRight(string(data), " \n"), "\n")
	if !ok {
		return stateFile{}, false
	}
	want := sha256.Sum256([]byte(body))
	if hex.EncodeToString(want[:]) != sum {
		return stateFile{}, false
	}
	var sf stateFile
	if json.Unmarshal([]byte(body), &sf) != nil || sf.Version != 1 {
		return stateFile{}, false
	}
	return sf, true
}

// openChain loads the chain state from dir, or starts a chain (writing its
// initial key to keyFile for the verifier). It returns the sealer and
// whether this start begins a new segment after an unclean stop.
func openChain(dir, keyFile string, limits chain.Limits) (*chain.Sealer, *chainStore, bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, false, fmt.Errorf("state dir: %w", err)
	}
	cs := &chainStore{dir: dir}
	sf, found, err := cs.load()
	if err != nil {
		return nil, nil, false, err
	}
	if !found {
		if _, err := os.Stat(cs.slotPath(0)); err == nil {
			return nil, nil, false, fmt.Errorf("chain state in %s is unreadable (both slots fail their checksum); it is needed to continue the chain", dir)
		}
		k0, err := chain.NewKey()
		if err != nil {
			return nil, nil, false, err
		}
		if err := writeNewKeyFile(keyFile, k0); err != nil {
			return nil, nil, false, err
		}
		s := chain.NewSealer(k0, limits)
		return s, cs, false, cs.save(s.State(), false, true)
	}
	key, err := chain.ParseKey(sf.Key)
	if err != nil {
		return nil, nil, false, fmt.Errorf("chain state in %s: %w", dir, err)
	}
	prev, err := hex.DecodeString(sf.Prev)
	if err != nil {
		return nil, nil, false, fmt.Errorf("chain state in %s: prev: %w", dir, err)
	}
	st := chain.State{Key: key, Epoch: sf.Epoch, Seq: sf.Seq, Prev: prev, EpochStarted: sf.EpochStarted, EpochEvents: sf.EpochEvents}
	newSegment := !sf.Clean
	if newSegment {
		// The last seqs and MAC in memory were lost: skip past every seq
		// that may have been used and start a segment with no prev, in a
		// fresh epoch, so nothing of the lost tail can be reused.
		st.Seq = sf.Reserved
		st.Prev = nil
		st.Key = chain.Evolve(key)
		st.Epoch++
		st.EpochStarted = time.Now()
		st.EpochEvents = 0
	}
	s := chain.Resume(st, limits)
	return s, cs, newSegment, cs.save(s.State(), false, true)
}

// writeNewKeyFile writes the verification key, refusing to overwrite one:
// an existing key verifies an existing trail.
func writeNewKeyFile(path string, k chain.Key) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("chain key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("chain key file %s exists but the chain state is gone: keep that key (it verifies the old trail), move it away and start again", path)
	}
	if err != nil {
		return fmt.Errorf("chain key file: %w", err)
	}
	if _, err := fmt.Fprintln(f, k.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// needsReservation reports whether seq is about to pass what is reserved.
func (cs *chainStore) needsReservation(seq uint64) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return seq >= cs.reserved
}

// save writes the state into the older slot. With sync it is fdatasync'd
// before returning: used for CRITICAL events, epoch changes, reservations
// and shutdown.
func (cs *chainStore) save(st chain.State, clean, sync bool) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.written && (st.Seq < cs.last.Seq || (st.Seq == cs.last.Seq && st.Epoch < cs.last.Epoch)) {
		// Every save is fsync'd: the newer state on disk covers it.
		return nil
	}
	if st.Seq >= cs.reserved {
		cs.reserved = st.Seq + seqReservation
		sync = true
	}
	cs.gen++
	sf := stateFile{
		Version: 1, Gen: cs.gen, Epoch: st.Epoch, Key: st.Key.String(), Seq: st.Seq, Reserved: cs.reserved,
		Prev: hex.EncodeToString(st.Prev), EpochStarted: st.EpochStarted, EpochEvents: st.EpochEvents, Clean: clean,
	}
	body, err := json.Marshal(sf)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	data := fmt.Appendf(nil, "%s\n%x\n", body, sum)
	if len(data) > slotSize {
		return fmt.Errorf("save chain state: %d bytes exceed the slot", len(data))
	}
	data = append(data, bytes.Repeat([]byte{' '}, slotSize-len(data))...)
	i := int(cs.gen % 2)
	if cs.slots[i] == nil {
		f, err := os.OpenFile(cs.slotPath(i), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("save chain state: %w", err)
		}
		cs.slots[i] = f
		if st, err := f.Stat(); err == nil && st.Size() != slotSize {
			sync = true // a new slot file: its size and name must be durable too
			defer syncDir(cs.dir)
		}
	}
	if _, err := cs.slots[i].WriteAt(data, 0); err != nil {
		return fmt.Errorf("save chain state: %w", err)
	}
	if sync {
		if err := unix.Fdatasync(int(cs.slots[i].Fd())); err != nil {
			return fmt.Errorf("save chain state: fdatasync: %w", err)
		}
	}
	cs.last, cs.written = st, true
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
