// Command fleet measures `vramward audit verify -fleet` on simulated node
// trails (run it with `make bench`, after `make build`): each node's trail is
// written by the host's own log code (checkpoints every 1,000 records, an
// epoch every 10,000), then the whole directory is verified by the built
// binary. It prints the wall time, the CPU time and the cores that makes,
// and the records per second, against one node verified alone in the same
// run (the baseline).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit"
)

func main() {
	bin := flag.String("vramward", "bin/vramward", "the vramward binary")
	nodes := flag.Int("nodes", 100, "simulated nodes")
	records := flag.Int("records", 10000, "records per node")
	flag.Parse()
	if err := run(*bin, *nodes, *records); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(bin string, nodes, records int) error {
	dir, err := os.MkdirTemp("", "vramward-bench-fleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fleet := filepath.Join(dir, "fleet")
	if err := os.Mkdir(fleet, 0o700); err != nil {
		return err
	}
	keys, err := os.Create(filepath.Join(dir, "fleet.keys"))
	if err != nil {
		return err
	}
	t0 := time.Now()
	var total int
	for i := 0; i < nodes; i++ {
		id := fmt.Sprintf("node-%03d", i)
		n, pub, err := writeTrail(filepath.Join(fleet, id+".log"), id, records)
		if err != nil {
			return err
		}
		total += n
		fmt.Fprintf(keys, "%s %s\n", id, pub)
	}
	keys.Close()
	fmt.Printf("audit verify -fleet, %d nodes of %d records (%d in all, %.1f s to write them)\n", nodes, records, total, time.Since(t0).Seconds())

	one := filepath.Join(dir, "one")
	if err := os.Mkdir(one, 0o700); err != nil {
		return err
	}
	if err := os.Link(filepath.Join(fleet, "node-000.log"), filepath.Join(one, "node-000.log")); err != nil {
		return err
	}
	oneKeys := filepath.Join(dir, "one.keys")
	if err := copyFirstLine(filepath.Join(dir, "fleet.keys"), oneKeys); err != nil {
		return err
	}
	bw, bc, err := timed(bin, one, oneKeys)
	if err != nil {
		return err
	}
	w, c, err := timed(bin, fleet, filepath.Join(dir, "fleet.keys"))
	if err != nil {
		return err
	}
	perNode := bw.Seconds()
	fmt.Printf("  one node alone (baseline)  %6.2f s wall, %.0f records/s, %.2f us of CPU a record\n", perNode, float64(total/nodes)/perNode, bc.Seconds()*1e6/float64(total/nodes))
	fmt.Printf("  the whole fleet            %6.2f s wall, %6.2f s CPU, %.1f of %d cores busy, %.0f records/s, %.1fx the baseline's rate, %.2f us of CPU a record\n",
		w.Seconds(), c.Seconds(), c.Seconds()/w.Seconds(), runtime.NumCPU(), float64(total)/w.Seconds(), (float64(total)/w.Seconds())/(float64(total/nodes)/perNode), c.Seconds()*1e6/float64(total))
	return nil
}

// writeTrail writes a node's trail as the host does and returns its record
// count and public key.
func writeTrail(path, id string, n int) (int, string, error) {
	l, err := trail.New(trail.Origin(id), trail.Limits{EpochEvents: 10000, EpochDuration: time.Hour, CheckpointEvents: 1000, CheckpointInterval: time.Hour})
	if err != nil {
		return 0, "", err
	}
	pub := l.VerifierKey()
	f, err := os.Create(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	written := 0
	put := func(r audit.Record) {
		w.Write(r.Line)
		w.WriteByte('\n')
		written++
	}
	for i := 0; i < n; i++ {
		e, err := audit.Make(audit.Actor{WorkerID: id}, audit.SealVerifiedFields{ShardID: "llama-70b/3", GPUDevice: uint64(i % 8)})
		if err != nil {
			return 0, "", err
		}
		e.ServiceID = "vramward"
		put(l.Seal(&e))
		if due, end := l.Due(); due {
			c, _, err := l.Checkpoint(end)
			if err != nil {
				return 0, "", err
			}
			put(c)
		}
	}
	c, _, err := l.Checkpoint(false)
	if err != nil {
		return 0, "", err
	}
	put(c)
	l.Destroy()
	return written, pub, w.Flush()
}

func copyFirstLine(from, to string) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	return os.WriteFile(to, []byte(sc.Text()+"\n"), 0o600)
}

// timed runs verify -fleet and returns its wall and CPU time.
func timed(bin, dir, keys string) (wall, cpu time.Duration, err error) {
	cmd := exec.Command(bin, "audit", "verify", "-fleet", dir, "-keys", keys)
	t0 := time.Now()
	out, err := cmd.Output()
	wall = time.Since(t0)
	if err != nil {
		return 0, 0, fmt.Errorf("verify -fleet: %v\n%s", err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return wall, cpu, nil
}
