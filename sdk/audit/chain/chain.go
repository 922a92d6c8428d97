// Package chain links audit records into a tamper-evident chain and verifies
// trails of them.
//
// Each record carries chain {epoch, prev, mac}:
//
//	mac_n = HMAC-SHA256(K_epoch, mac_{n-1} || canonical(event_n without chain.mac))
//
// Keys evolve forward, K_{e+1} = HMAC-SHA256(K_e, "vramward/epoch"), and the
// old key is erased, so whoever takes the host later cannot rewrite records of
// earlier epochs; the verifier holds K_0. An epoch ends after Limits.Events
// records or Limits.Duration, whichever comes first.
package chain

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/vramward/vramward/sdk/audit"
)

// KeySize is the size of a chain key.
const KeySize = 32

// Key is an epoch key.
type Key [KeySize]byte

// NewKey returns a fresh random K_0.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("chain: new key: %w", err)
	}
	return k, nil
}

// ParseKey reads a key written as 64 hex digits (surrounding space allowed).
func ParseKey(text string) (Key, error) {
	b, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil || len(b) != KeySize {
		return Key{}, fmt.Errorf("chain: a key is %d bytes written as %d hex digits", KeySize, 2*KeySize)
	}
	var k Key
	copy(k[:], b)
	return k, nil
}

// String writes the key as hex, for a key file.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

var epochLabel = []byte("vramward/epoch")

// Evolve derives the next epoch's key.
func Evolve(k Key) Key {
	m := hmac.New(sha256.New, k[:])
	m.Write(epochLabel)
	var next Key
	copy(next[:], m.Sum(nil))
	return next
}

// KeyAt derives K_epoch from K_0.
func KeyAt(k0 Key, epoch uint64) Key {
	k := k0
	for i := uint64(0); i < epoch; i++ {
		k = Evolve(k)
	}
	return k
}

// MAC computes a record's MAC from the previous MAC and its canonical bytes.
func MAC(k Key, prev, canonical []byte) []byte {
	m := hmac.New(sha256.New, k[:])
	m.Write(prev)
	m.Write(canonical)
	return m.Sum(nil)
}

// Limits end an epoch.
type Limits struct {
	Events   uint64
	Duration time.Duration
}

// DefaultLimits follow journald's sealing interval.
var DefaultLimits = Limits{Events: 10000, Duration: 15 * time.Minute}

// State is everything a Sealer needs to continue a chain; the host persists
// it. It holds the current epoch key only, never an earlier one.
type State struct {
	Key          Key
	Epoch        uint64
	Seq          uint64 // last seq assigned, 0 before the first record
	Prev         []byte // MAC of the last record
	EpochStarted time.Time
	EpochEvents  uint64
}

// Sealer assigns seq and the chain to records, one at a time. It is not safe
// for concurrent use; the host's bus owns one.
type Sealer struct {
	st     State
	limits Limits
	now    func() time.Time
}

// NewSealer starts a chain at epoch 0 with k0.
func NewSealer(k0 Key, limits Limits) *Sealer {
	return Resume(State{Key: k0, EpochStarted: time.Now()}, limits)
}

// Resume continues a chain from a saved state.
func Resume(st State, limits Limits) *Sealer {
	if limits.Events == 0 {
		limits.Events = DefaultLimits.Events
	}
	if limits.Duration <= 0 {
		limits.Duration = DefaultLimits.Duration
	}
	st.Prev = append([]byte(nil), st.Prev...)
	return &Sealer{st: st, limits: limits, now: time.Now}
}

// Seal assigns the next seq and the chain to e. It ends the epoch first when
// a limit is reached.
func (s *Sealer) Seal(e *audit.Event) {
	s.Tick()
	s.st.Seq++
	e.Seq = s.st.Seq
	e.Chain = audit.Chain{Epoch: s.st.Epoch, Prev: s.st.Prev}
	var buf [1024]byte
	e.Chain.MAC = MAC(s.st.Key, s.st.Prev, e.AppendCanonical(buf[:0]))
	s.st.Prev = e.Chain.MAC
	s.st.EpochEvents++
}

// Tick ends the epoch if a limit is reached. The host calls it on a timer
// too, so a key does not outlive its epoch on an idle host.
func (s *Sealer) Tick() {
	if s.st.EpochEvents >= s.limits.Events || s.now().Sub(s.st.EpochStarted) >= s.limits.Duration {
		old := s.st.Key
		s.st.Key = Evolve(old)
		clear(old[:])
		s.st.Epoch++
		s.st.EpochEvents = 0
		s.st.EpochStarted = s.now()
	}
}

// State returns a copy of the state, for persisting.
func (s *Sealer) State() State {
	st := s.st
	st.Prev = append([]byte(nil), s.st.Prev...)
	return st
}

// SetClock replaces the clock, for tests of epoch limits.
func (s *Sealer) SetClock(now func() time.Time) { s.now = now }
