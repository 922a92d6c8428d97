package audit

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// chainStore loads and saves the chain state.
type chainStore struct {
	path     string
	reserved uint64
}

// openChain loads the chain state from dir, or starts a chain (writing its
// initial key to keyFile for the verifier). It returns the sealer and
// whether this start begins a new segment after an unclean stop.
func openChain(dir, keyFile string, limits chain.Limits) (*chain.Sealer, *chainStore, bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, false, fmt.Errorf("state dir: %w", err)
	}
	cs := &chainStore{path: filepath.Join(dir, "chain.state")}
	data, err := os.ReadFile(cs.path)
	if errors.Is(err, os.ErrNotExist) {
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
	if err != nil {
		return nil, nil, false, fmt.Errorf("read chain state: %w", err)
	}
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil || sf.Version != 1 {
		return nil, nil, false, fmt.Errorf("chain state %s is unreadable (%v); it is needed to continue the chain", cs.path, err)
	}
	key, err := chain.ParseKey(sf.Key)
	if err != nil {
		return nil, nil, false, fmt.Errorf("chain state %s: %w", cs.path, err)
	}
	prev, err := hex.DecodeString(sf.Prev)
	if err != nil {
		return nil, nil, false, fmt.Errorf("chain state %s: prev: %w", cs.path, err)
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
func (cs *chainStore) needsReservation(seq uint64) bool { return seq >= cs.reserved }

// save writes the state through a temporary file and a rename. With sync it
// is fsync'd (file and directory) before returning: used for CRITICAL
// events, epoch changes, reservations and shutdown.
func (cs *chainStore) save(st chain.State, clean, sync bool) error {
	if st.Seq >= cs.reserved {
		cs.reserved = st.Seq + seqReservation
		sync = true
	}
	sf := stateFile{
		Version: 1, Epoch: st.Epoch, Key: st.Key.String(), Seq: st.Seq, Reserved: cs.reserved,
		Prev: hex.EncodeToString(st.Prev), EpochStarted: st.EpochStarted, EpochEvents: st.EpochEvents, Clean: clean,
	}
	data, err := json.Marshal(sf)
	if err != nil {
		return err
	}
	tmp := cs.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save chain state: %w", err)
	}
	_, werr := f.Write(data)
	var serr error
	if sync {
		serr = f.Sync()
	}
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		return fmt.Errorf("save chain state: %w", err)
	}
	if err := os.Rename(tmp, cs.path); err != nil {
		return fmt.Errorf("save chain state: %w", err)
	}
	if sync {
		return syncDir(filepath.Dir(cs.path))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
