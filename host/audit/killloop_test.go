package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
	"github.com/vramward/vramward/sdk/schema"
)

// copySink appends every record to a file, fsync'd before the write
// returns, skipping a re-send of a record it holds byte for byte (as the
// file sink does): a copy that survives a kill -9 of the host.
type copySink struct {
	mu     sync.Mutex
	f      *os.File
	have   map[uint64]string
	closed bool
}

func openCopy(t *testing.T, path string) *copySink {
	t.Helper()
	c := &copySink{have: map[uint64]string{}}
	// A write cut by the kill leaves a partial last line: cut it, as the
	// file sink does.
	if data, err := os.ReadFile(path); err == nil && len(data) > 0 && data[len(data)-1] != '\n' {
		if err := os.Truncate(path, int64(bytes.LastIndexByte(data, '\n')+1)); err != nil {
			t.Fatal(err)
		}
	}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if e, err := audit.ParseJSON(sc.Bytes()); err == nil {
				c.have[e.Seq] = sc.Text()
			}
		}
		f.Close()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	c.f = f
	return c
}

func (c *copySink) Info() audit.SinkInfo {
	return audit.SinkInfo{Name: "copy", Version: "test", Schema: schema.Schema{}}
}
func (c *copySink) Configure(context.Context, schema.Values) error { return nil }
func (c *copySink) Write(_ context.Context, records []audit.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf []byte
	for i := range records {
		if c.have[records[i].Seq] == string(records[i].Line) {
			continue
		}
		c.have[records[i].Seq] = string(records[i].Line)
		buf = append(append(buf, records[i].Line...), '\n')
	}
	if _, err := c.f.Write(buf); err != nil {
		return err
	}
	return c.f.Sync()
}
func (c *copySink) Flush(context.Context) error { return nil }
func (c *copySink) Close(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.f.Sync()
}
func (c *copySink) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// TestKillLoopChild is the host TestKillNineLoop kills: a bus with two
// copies whose state writes fail part of the time, emitting until killed
// (or, with mode "finish", emitting a few and stopping cleanly).
func TestKillLoopChild(t *testing.T) {
	dir := os.Getenv("VRAMWARD_KILL_LOOP_DIR")
	if dir == "" {
		t.Skip("run by TestKillNineLoop")
	}
	finish := os.Getenv("VRAMWARD_KILL_LOOP_MODE") == "finish"
	if !finish {
		seed, _ := strconv.ParseUint(os.Getenv("VRAMWARD_KILL_LOOP_SEED"), 10, 64)
		rng := rand.New(rand.NewPCG(seed, 1))
		var mu sync.Mutex
		flaky := func() bool { mu.Lock(); defer mu.Unlock(); return rng.IntN(10) < 3 }
		w := func() error {
			if flaky() {
				return syscall.EIO
			}
			return nil
		}
		s := func(fd int) error {
			if flaky() {
				return syscall.EIO
			}
			return syscall.Fdatasync(fd)
		}
		writeHook.Store(&w)
		fdatasyncHook.Store(&s)
	}
	state := filepath.Join(dir, "state")
	b, _, _ := newBusWithSink(t, state, Options{Limits: trail.Limits{CheckpointEvents: 50, EpochEvents: 300}, QueueSize: 100},
		openCopy(t, filepath.Join(dir, "a.log")), openCopy(t, filepath.Join(dir, "b.log")))
	for i := 0; !finish || i < 20; i++ {
		e := info(t, i)
		if i%25 == 0 {
			e = critical(t)
		}
		if err := b.Emit(context.Background(), e); err != nil && !errors.As(err, new(*CriticalError)) && !errors.Is(err, ErrStateUnwritten) && !errors.Is(err, syscall.EIO) {
			t.Fatalf("emit: %v", err)
		}
	}
	if err := b.Close("finished"); err != nil {
		t.Fatal(err)
	}
}

// TestKillNineLoop kills the host with SIGKILL 20 times while its state
// writes fail part of the time, then stops it cleanly. Neither copy holds
// a seq twice (a fork), and both verify with the public key once the
// crashes' declared losses are accepted.
func TestKillNineLoop(t *testing.T) {
	dir := t.TempDir()
	if keep := os.Getenv("VRAMWARD_KILL_LOOP_KEEP"); keep != "" {
		dir = keep
	}
	child := func(mode string, seed int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillLoopChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "VRAMWARD_KILL_LOOP_DIR="+dir, "VRAMWARD_KILL_LOOP_MODE="+mode, "VRAMWARD_KILL_LOOP_SEED="+strconv.Itoa(seed))
		return cmd
	}
	size := func() int64 {
		st, err := os.Stat(filepath.Join(dir, "a.log"))
		if err != nil {
			return 0
		}
		return st.Size()
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 20; i++ {
		cmd := child("run", i)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }() // killed: its status is the signal
		// Kill it once it has delivered something (a start whose state
		// write failed ends on its own), at a random point after.
		before := size()
		for deadline := time.Now().Add(10 * time.Second); size() == before && time.Now().Before(deadline); {
			select {
			case <-exited:
				deadline = time.Time{}
			case <-time.After(5 * time.Millisecond):
			}
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		_ = cmd.Process.Kill() // it may have ended already
		<-exited
	}
	if out, err := child("finish", 0).CombinedOutput(); err != nil {
		t.Fatalf("the clean run after the kills: %v\n%s", err, out)
	}
	key, _, err := trail.ReadVerifierKey(filepath.Join(dir, "state", PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.log", "b.log"} {
		path := filepath.Join(dir, name)
		seqs := map[uint64]int{}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		lines := 0
		for sc.Scan() {
			e, err := audit.ParseJSON(sc.Bytes())
			if err != nil {
				t.Fatalf("%s line %d: %v", name, lines+1, err)
			}
			lines++
			if seqs[e.Seq]++; seqs[e.Seq] > 1 {
				t.Fatalf("%s holds seq %d twice, with different records: a seq was reissued", name, e.Seq)
			}
		}
		f.Close()
		rep, err := trail.VerifyFiles(trail.Options{Key: key}, path)
		var ve *chain.Error
		if err != nil && (!errors.As(err, &ve) || ve.Problem != trail.Lost) {
			t.Fatalf("%s (%d records): %v", name, lines, err)
		}
		var accept []trail.SeqRange
		for _, l := range rep.Lost {
			accept = append(accept, l.SeqRange)
		}
		if _, err := trail.VerifyFiles(trail.Options{Key: key, AcceptLoss: accept}, path); err != nil {
			t.Fatalf("%s (%d records, losses %v accepted): %v", name, lines, accept, err)
		}
		t.Log(fmt.Sprintf("%s: %d records, %d crash losses accepted", name, lines, len(accept)))
	}
}
