// Command host measures the daemon as a process (run it with `make bench`,
// after `make build`): the cold start of `vramward run` on a copy of the
// example config until /readyz answers 200 (goal: median under 300 ms),
// against the start and exit of `vramward version` measured in the same run
// (what any process start costs here).
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	hostBin := flag.String("vramward", "bin/vramward", "the vramward binary")
	pluginBin := flag.String("plugin", "bin/vramward-plugin-audit-file", "the audit-file plugin binary")
	runs := flag.Int("runs", 15, "starts to measure")
	flag.Parse()
	if err := run(*hostBin, *pluginBin, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(hostBin, pluginBin string, runs int) error {
	hostBin, _ = filepath.Abs(hostBin)
	pluginBin, _ = filepath.Abs(pluginBin)
	loaderBin, _ := filepath.Abs(filepath.Join(filepath.Dir(pluginBin), "vramward-plugin-loader-gguf"))
	vramBin, _ := filepath.Abs(filepath.Join(filepath.Dir(pluginBin), "vramward-plugin-vram-cuda"))
	models, _ := filepath.Abs("examples/models")
	dir, err := os.MkdirTemp("", "vramward-bench-host-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		return err
	}
	example, err := os.ReadFile("examples/config.hcl")
	if err != nil {
		return err
	}
	var base, ready []float64
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		if out, err := exec.Command(hostBin, "version").CombinedOutput(); err != nil {
			return fmt.Errorf("vramward version: %v: %s", err, out)
		}
		base = append(base, ms(time.Since(t0)))

		port, err := freePort()
		if err != nil {
			return err
		}
		cfg := strings.NewReplacer(
			`"../var/worker.token"`, `"token"`,
			`"../var/state"`, `"state"`,
			`"../bin/vramward-plugin-audit-file"`, fmt.Sprintf("%q", pluginBin),
			`abspath("../var/audit/audit.log")`, `abspath("audit/audit.log")`,
			`"127.0.0.1:9464"`, fmt.Sprintf(`"127.0.0.1:%d"`, port),
			`"../bin/vramward-plugin-loader-gguf"`, fmt.Sprintf("%q", loaderBin),
			`"../bin/vramward-plugin-vram-cuda"`, fmt.Sprintf("%q", vramBin),
			`abspath("models")`, fmt.Sprintf("%q", models),
			`"models/tiny.gguf"`, fmt.Sprintf("%q", filepath.Join(models, "tiny.gguf")),
		).Replace(string(example))
		cfgPath := filepath.Join(dir, "config.hcl")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			return err
		}
		d, err := coldStart(hostBin, cfgPath, port)
		if err != nil {
			return err
		}
		ready = append(ready, ms(d))
	}
	sort.Float64s(base)
	sort.Float64s(ready)
	mb, mr := base[len(base)/2], ready[len(ready)/2]
	fmt.Printf("cold start of vramward run on the example config to /readyz 200, %d runs\n", runs)
	fmt.Printf("  process start and exit (vramward version, baseline)  median %7.1f ms\n", mb)
	fmt.Printf("  vramward run to /readyz ready                        median %7.1f ms  p90 %7.1f ms  ratio %.1f  goal median <300 ms: %s\n",
		mr, ready[len(ready)*9/10], mr/mb, verdict(mr < 300))
	return nil
}

// coldStart starts the host, polls /readyz until 200, then stops it with
// SIGTERM and waits for it.
func coldStart(hostBin, cfgPath string, port int) (time.Duration, error) {
	cmd := exec.Command(hostBin, "run", "-config", cfgPath, "-log-level", "warn")
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	client := &http.Client{Timeout: time.Second}
	for deadline := t0.Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0), nil
			}
		}
	}
	return 0, fmt.Errorf("not ready within 10s")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
