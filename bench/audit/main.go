// Command audit measures the audit-file sink through the real plugin
// process against in-process baselines taken in the same run, and prints
// ratios and medians (run it with `make bench`, after `make build`).
//
//   - non-CRITICAL throughput with batching, against the same sink appending
//     JSON in-process (goals: a third of the baseline's rate, which is what
//     a noisy machine can judge, and at least 250,000 events/s);
//   - CRITICAL emit latency, with the signed checkpoint the host makes to
//     cover it (signed here, sent in the same batch as the host does),
//     against a raw write+fsync of the same bytes on the same disk,
//     interleaved (goal: p50 within 2x).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	hostaudit "github.com/vramward/vramward/host/audit"
	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/plugins/audit-file/filesink"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/plugintest"
)

func main() {
	pluginPath := flag.String("plugin", "bin/vramward-plugin-audit-file", "audit-file plugin binary")
	dir := flag.String("dir", "bin/bench-tmp", "scratch directory (on the disk to measure)")
	events := flag.Int("events", 200000, "events per throughput run")
	batch := flag.Int("batch", 512, "events per batch (one RPC message)")
	runs := flag.Int("runs", 5, "throughput runs (the median is reported)")
	criticals := flag.Int("critical", 400, "CRITICAL emits per latency run")
	cpuProfile := flag.String("cpuprofile", "", "write this process's CPU profile (the host's side) here")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*pluginPath, *dir, *events, *batch, *runs, *criticals); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(pluginPath, dir string, n, batch, runs, criticals int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	work, err := os.MkdirTemp(dir, "audit-")
	if err != nil {
		return err
	}
	if work, err = filepath.Abs(work); err != nil {
		return err
	}
	defer os.RemoveAll(work)

	infoEvents := makeEvents(n, audit.VramSealed)
	fmt.Printf("audit-file sink, %d events of %d bytes a run, batches of %d, median of %d runs\n\n",
		n, len(infoEvents[0].AppendJSON(nil))+1, batch, runs)

	var base, plug, baseD, plugD []float64
	for r := 0; r < runs; r++ {
		b, err := inProcess(filepath.Join(work, fmt.Sprintf("base-%d.log", r)), infoEvents, batch)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		p, err := throughPlugin(pluginPath, filepath.Join(work, fmt.Sprintf("plugin-%d.log", r)), infoEvents, batch)
		if err != nil {
			return fmt.Errorf("plugin: %w", err)
		}
		base, plug = append(base, b.acked), append(plug, p.acked)
		baseD, plugD = append(baseD, b.durable), append(plugD, p.durable)
	}
	mb, mp := median(base), median(plug)
	ratio := mp / mb
	fmt.Printf("non-CRITICAL throughput, until every event is acknowledged (in the kernel; fsync'd every flush_interval)\n")
	fmt.Printf("  in-process JSON append (baseline) %12.0f events/s\n", mb)
	fmt.Printf("  through the plugin process        %12.0f events/s  ratio %.2f  goal ratio >=0.33: %s; goal >=250000/s: %s\n",
		mp, ratio, verdict(ratio >= 0.33), verdict(mp >= 250000))
	fmt.Printf("  the same, until a final fsync made all of them durable: baseline %.0f, plugin %.0f events/s, ratio %.2f\n",
		median(baseD), median(plugD), median(plugD)/median(baseD))
	fmt.Printf("  CPU per event during the plugin runs: plugin %.2f us, host %.2f us (medians)\n",
		median(pluginCPU)/float64(n)*1e6, median(hostCPU)/float64(n)*1e6)

	critEvents := makeEvents(criticals, audit.IntegrityViolation)
	raw, err := rawFsync(filepath.Join(work, "raw.log"), critEvents)
	if err != nil {
		return fmt.Errorf("raw fsync: %w", err)
	}
	crit, err := criticalThroughPlugin(pluginPath, filepath.Join(work, "critical.log"), critEvents)
	if err != nil {
		return fmt.Errorf("critical: %w", err)
	}
	rtt, err := criticalThroughPlugin(pluginPath, filepath.Join(work, "info.log"), makeEvents(criticals, audit.SealVerified))
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	iRaw, iCrit, err := interleaved(pluginPath, filepath.Join(work, "i-raw.log"), filepath.Join(work, "i-critical.log"), critEvents)
	if err != nil {
		return fmt.Errorf("interleaved: %w", err)
	}
	for _, v := range [][]float64{raw, crit, rtt, iRaw, iCrit} {
		sort.Float64s(v)
	}
	fmt.Printf("CRITICAL emit latency, %d emits\n", criticals)
	fmt.Printf("  interleaved, one raw write+fsync after each plugin emit, so both meet the disk alike:\n")
	fmt.Printf("    raw write+fsync (baseline)  p50 %.3f ms  p99 %.3f ms\n", pct(iRaw, 50), pct(iRaw, 99))
	fmt.Printf("    through the plugin process, with its checkpoint  p50 %.3f ms  p99 %.3f ms  p50 ratio %.2f  goal <=2.00: %s\n",
		pct(iCrit, 50), pct(iCrit, 99), pct(iCrit, 50)/pct(iRaw, 50), verdict(pct(iCrit, 50) <= 2*pct(iRaw, 50)))
	fmt.Printf("  back to back, each alone (a raw fsync right after the last is cheaper than one after a pause):\n")
	fmt.Printf("    raw write+fsync             p50 %.3f ms  p99 %.3f ms\n", pct(raw, 50), pct(raw, 99))
	fmt.Printf("    through the plugin process  p50 %.3f ms  p99 %.3f ms  p50 ratio %.2f\n", pct(crit, 50), pct(crit, 99), pct(crit, 50)/pct(raw, 50))
	fmt.Printf("  for reference, an INFO emit (no fsync): p50 %.3f ms  p99 %.3f ms\n", pct(rtt, 50), pct(rtt, 99))
	return nil
}

func makeEvents(n int, t audit.Type) []audit.Event {
	s := &chain.Linker{}
	sp, _ := audit.Lookup(t)
	out := make([]audit.Event, n)
	for i := range out {
		var fs []audit.Field
		for j, f := range sp.Fields {
			if f.Kind == audit.KindString {
				fs = append(fs, audit.Str(f.Name, fmt.Sprintf("%s-value-%d", f.Name, i)))
			} else {
				fs = append(fs, audit.Uint(f.Name, uint64(i*31+j)))
			}
		}
		e, err := audit.New(t, audit.Actor{WorkerID: "worker-1", SourceIP: "10.0.0.1", CorrelationID: fmt.Sprintf("req-%d", i)}, fs...)
		if err != nil {
			panic(err)
		}
		e.ServiceID = "bench"
		s.Link(&e, 0)
		out[i] = e
	}
	return out
}

func newSink(path string) (*filesink.Sink, error) {
	s := filesink.New(nil)
	vals, err := filesink.Schema.Decode([]byte(fmt.Sprintf(`{"path": %q, "max_bytes": 0}`, path)))
	if err != nil {
		return nil, err
	}
	return s, s.Configure(context.Background(), vals)
}

// rates are events per second until every event was acknowledged (in the
// kernel: what an emit waits for) and until the final fsync made them all
// durable.
type rates struct{ acked, durable float64 }

// inProcess is the baseline: the same sink code, each event encoded (its
// record line, as the host makes it) and appended in-process.
func inProcess(path string, events []audit.Event, batch int) (rates, error) {
	s, err := newSink(path)
	if err != nil {
		return rates{}, err
	}
	ctx := context.Background()
	records := make([]audit.Record, 0, batch)
	var lines []byte
	start := time.Now()
	for i := 0; i < len(events); i += batch {
		records, lines = records[:0], lines[:0]
		for j := i; j < min(i+batch, len(events)); j++ {
			e := &events[j]
			at := len(lines)
			lines = e.AppendJSON(lines)
			records = append(records, audit.Record{Event: *e, Line: lines[at:len(lines):len(lines)]})
		}
		if err := s.Write(ctx, records); err != nil {
			return rates{}, err
		}
	}
	acked := time.Since(start)
	if err := s.Flush(ctx); err != nil {
		return rates{}, err
	}
	durable := time.Since(start)
	n := float64(len(events))
	return rates{n / acked.Seconds(), n / durable.Seconds()}, s.Close(ctx)
}

func launch(pluginPath, path string, batch int) (*sinkclient.Client, func(), error) {
	m, err := sinkclient.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return nil, nil, err
	}
	raw, c, err := plugintest.Launch(pluginPath, handshake.KindAuditSink,
		sinkclient.Plugin(sinkclient.Options{Sink: "bench", Metrics: m, Logger: hclog.NewNullLogger(), MaxBatchEvents: batch}))
	if err != nil {
		if c != nil {
			c.Kill()
		}
		return nil, nil, err
	}
	client := raw.(*sinkclient.Client)
	if err := client.Configure(context.Background(), []byte(fmt.Sprintf(`{"path": %q, "max_bytes": 0}`, path))); err != nil {
		c.Kill()
		return nil, nil, err
	}
	lastPid = c.ReattachConfig().Pid
	return client, func() { _ = client.Shutdown(context.Background()); c.Kill() }, nil
}

// lastPid is the pid of the plugin launched last, for its CPU time.
var lastPid int

type samples []float64

func (s *samples) add(x float64) { *s = append(*s, x) }

// CPU seconds spent in each process during the plugin runs, to show which
// side bounds the throughput.
var pluginCPU, hostCPU samples

// cpuOf reads a process's user+system CPU seconds from /proc (clock ticks
// of 1/100 s on Linux).
func cpuOf(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b)[strings.LastIndex(string(b), ")")+2:])
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return float64(u+s) / 100
}

func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func throughPlugin(pluginPath, path string, events []audit.Event, batch int) (rates, error) {
	client, stop, err := launch(pluginPath, path, batch)
	if err != nil {
		return rates{}, err
	}
	defer stop()
	ctx := context.Background()
	p0, h0 := cpuOf(lastPid), selfCPU()
	defer func() {
		pluginCPU.add(cpuOf(lastPid) - p0)
		hostCPU.add(selfCPU() - h0)
	}()
	start := time.Now()
	// The host's bus hands the client hostaudit.BatchesPerDelivery batches
	// at a time, which it sends on one stream, a few in flight; do the same.
	per := hostaudit.BatchesPerDelivery * batch
	for i := 0; i < len(events); i += per {
		if err := client.EmitBatch(ctx, events[i:min(i+per, len(events))]); err != nil {
			return rates{}, err
		}
	}
	acked := time.Since(start)
	if err := client.Flush(ctx); err != nil {
		return rates{}, err
	}
	durable := time.Since(start)
	n := float64(len(events))
	return rates{n / acked.Seconds(), n / durable.Seconds()}, nil
}

// rawFsync appends each event's line with one write and one fsync: the
// floor for a durable append of the same bytes on the same disk.
func rawFsync(path string, events []audit.Event) ([]float64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []float64
	for i := range events {
		line := append(events[i].AppendJSON(nil), '\n')
		start := time.Now()
		if _, err := f.Write(line); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		out = append(out, float64(time.Since(start).Microseconds())/1000)
	}
	return out, nil
}

// interleaved alternates a CRITICAL emit through the plugin with a raw
// write+fsync of the same bytes on the same disk. A raw fsync issued right
// after the previous one finds the journal warm and costs about half of
// one issued after a pause (measured here: 0.15 against 0.22 ms after
// 0.2 ms idle, 0.29 ms after 1 ms); the plugin's fsyncs always come after
// a round trip, so a fair floor is measured with the same rhythm.
func interleaved(pluginPath, rawPath, critPath string, events []audit.Event) (raw, crit []float64, err error) {
	client, stop, err := launch(pluginPath, critPath, 2)
	if err != nil {
		return nil, nil, err
	}
	defer stop()
	f, err := os.OpenFile(rawPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	tl, err := trail.New(trail.Origin("bench"), trail.DefaultLimits)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range events {
		start := time.Now()
		// What the host does for a CRITICAL event: seal it, sign a
		// checkpoint over it, send both in one batch.
		r := tl.Seal(&e)
		c, _, err := tl.Checkpoint(false)
		if err != nil {
			return nil, nil, err
		}
		if err := client.EmitRecords(context.Background(), []audit.Record{r, c}); err != nil {
			return nil, nil, err
		}
		crit = append(crit, float64(time.Since(start).Microseconds())/1000)
		// The host makes the next checkpoint's signing nonces while the
		// sink writes (Bus.prepareSigning): off the timed path here too.
		if err := tl.PrepareSigning(); err != nil {
			return nil, nil, err
		}
		line := append(append([]byte(nil), r.Line...), '\n')
		line = append(append(line, c.Line...), '\n')
		start = time.Now()
		if _, err := f.Write(line); err != nil {
			return nil, nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, nil, err
		}
		raw = append(raw, float64(time.Since(start).Microseconds())/1000)
	}
	return raw, crit, nil
}

func criticalThroughPlugin(pluginPath, path string, events []audit.Event) ([]float64, error) {
	client, stop, err := launch(pluginPath, path, 1)
	if err != nil {
		return nil, err
	}
	defer stop()
	var out []float64
	for _, e := range events {
		start := time.Now()
		if err := client.Emit(context.Background(), e); err != nil {
			return nil, err
		}
		out = append(out, float64(time.Since(start).Microseconds())/1000)
	}
	return out, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func pct(sorted []float64, p int) float64 {
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
