package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vramward/vramward/sdk/audit/sinkclient"
	"github.com/vramward/vramward/sdk/loader"
	"github.com/vramward/vramward/sdk/plugintest"
	"github.com/vramward/vramward/sdk/sandbox"
)

// TestPinnedChecksumRefusesTheBinary: a binary that differs from its pinned
// sha256 is never executed; the error names both digests.
func TestPinnedChecksumRefusesTheBinary(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	bin := filepath.Join(dir, "plugin.sh")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	sm, _ := sinkclient.NewMetrics(reg)
	l := &Launcher{Logger: hclog.NewNullLogger(), Metrics: m}
	spec := Spec{Name: "p", Kind: "audit_sink", Path: bin, SHA256: strings.Repeat("ab", 32), StartTimeout: time.Second}
	_, err = l.Launch(context.Background(), spec, sinkclient.Plugin(sinkclient.Options{Sink: "p", Metrics: sm}))
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Expected != spec.SHA256 || len(ce.Actual) != 64 {
		t.Fatalf("want a ChecksumError with both digests, got %v", err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the refused binary ran")
	}
}

func testLauncher(t *testing.T) (*Launcher, *sinkclient.Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := sinkclient.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return &Launcher{Logger: hclog.NewNullLogger(), Metrics: m}, sm
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMisbehavingBinariesCannotHangTheHost tries what an operator's typo or
// a hostile plugin would: a binary that exits at once, one that never
// answers, and scripts whose children keep stdout and stderr open. Launch
// must fail within start_timeout plus a little, and leave nothing running.
func TestMisbehavingBinariesCannotHangTheHost(t *testing.T) {
	const startTimeout = time.Second
	cases := map[string]string{
		"exits at once":           "exit 0\n",
		"never answers":           "echo $$ >> PIDS\nexec sleep 600\n",
		"child holds the pipes":   "sleep 600 &\necho $! >> PIDS\nexit 0\n",
		"both hang with the pipe": "sleep 600 &\necho $! $$ >> PIDS\nwait\n",
		// A child in a session of its own is out of the group's reach (the
		// README says so); it must still not hold the host up.
		"child escapes the group": "setsid sleep 600 &\necho $! > PIDS.escaped\necho $$ >> PIDS\nexec sleep 600\n",
		"writes junk to stdout":   "echo $$ >> PIDS\nwhile :; do echo junk; sleep 0.1; done\n",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			pids := filepath.Join(dir, "pids")
			bin := writeScript(t, dir, "plugin.sh", strings.ReplaceAll(body, "PIDS", pids))
			t.Cleanup(func() {
				for _, pid := range plugintest.ReadPids(t, pids+".escaped") {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			l, sm := testLauncher(t)
			start := time.Now()
			proc, err := l.Launch(context.Background(), Spec{Name: "p", Kind: "audit_sink", Path: bin, StartTimeout: startTimeout},
				sinkclient.Plugin(sinkclient.Options{Sink: "p", Metrics: sm}))
			took := time.Since(start)
			if err == nil {
				proc.Stop()
				t.Fatal("a binary that is no plugin was started")
			}
			if took > startTimeout+2*time.Second {
				t.Fatalf("Launch took %s with start_timeout %s", took, startTimeout)
			}
			deadline := time.Now().Add(2 * time.Second)
			for _, pid := range plugintest.ReadPids(t, pids) {
				for plugintest.Running(pid) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if plugintest.Running(pid) {
					t.Errorf("pid %d is still running after the failed start", pid)
				}
			}
		})
	}
}

// TestPinnedBinaryIsWhatRuns swaps a pinned plugin binary with another one
// in a tight loop while the host launches it: the other binary must never
// run, whichever side of each launch the swap lands on.
func TestPinnedBinaryIsWhatRuns(t *testing.T) {
	dir := t.TempDir()
	ranGood, ranBad := filepath.Join(dir, "good-ran"), filepath.Join(dir, "bad-ran")
	good := []byte("#!/bin/sh\necho x >> " + ranGood + "\n")
	bad := []byte("#!/bin/sh\necho x >> " + ranBad + "\n")
	sum := sha256.Sum256(good)
	bin := filepath.Join(dir, "plugin")
	for _, f := range []struct {
		name string
		b    []byte
	}{{"good", good}, {"bad", bad}, {"plugin", good}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.b, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		defer func() { swapped <- n }()
		tmp := filepath.Join(dir, "swap")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			src := []byte(good)
			if i%2 == 0 {
				src = bad
			}
			if os.WriteFile(tmp, src, 0o700) == nil && os.Rename(tmp, bin) == nil {
				n++
			}
		}
	}()
	l, sm := testLauncher(t)
	mismatches := 0
	for i := 0; i < 200; i++ {
		_, err := l.Launch(context.Background(), Spec{Name: "p", Kind: "audit_sink", Path: bin, SHA256: hex.EncodeToString(sum[:]), StartTimeout: time.Second},
			sinkclient.Plugin(sinkclient.Options{Sink: "p", Metrics: sm}))
		var ce *ChecksumError
		if errors.As(err, &ce) {
			mismatches++
		}
	}
	close(stop)
	swaps := <-swapped
	if _, err := os.Stat(ranBad); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the unpinned binary ran")
	}
	t.Logf("200 launches, %d swaps, %d refused as mismatches", swaps, mismatches)
	if mismatches == 0 || mismatches == 200 {
		t.Logf("note: the swap never landed on both sides of a launch")
	}
}

// TestPluginEnvironmentIsAllowListed: a plugin sees only the allow-listed
// variables of the host, never a secret the host holds in its environment.
func TestPluginEnvironmentIsAllowListed(t *testing.T) {
	t.Setenv("VRAMWARD_TOKEN", "s3cret-token-0123456789")
	t.Setenv("GOMEMLIMIT", "300MiB")
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	bin := writeScript(t, dir, "plugin.sh", "env > "+out+"\n")
	l, sm := testLauncher(t)
	l.LogLevel = "warn"
	if _, err := l.Launch(context.Background(), Spec{Name: "p", Kind: "audit_sink", Path: bin, StartTimeout: time.Second, Policy: Policy{WriteDirs: []string{dir}}},
		sinkclient.Plugin(sinkclient.Options{Sink: "p", Metrics: sm})); err == nil {
		t.Fatal("a script was started as a plugin")
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	if strings.Contains(env, "s3cret-token") || strings.Contains(env, "VRAMWARD_TOKEN") {
		t.Fatalf("the plugin saw the host's secret:\n%s", env)
	}
	for _, want := range []string{"GOMEMLIMIT=300MiB", "VRAMWARD_PLUGIN_LOG_LEVEL=warn", "PLUGIN_PROTOCOL_VERSIONS="} {
		if !strings.Contains(env, want) {
			t.Errorf("plugin environment lacks %s:\n%s", want, env)
		}
	}
}

// TestHostSandboxHoldsThePlugin: a plugin binary (a script, so that it
// probes before any SDK code could restrict it) finds itself held by the
// host before its first instruction: no capability, no_new_privs, the
// seccomp filter; a file outside its policy unreadable, a file beside it
// unwritable, and the host out of reach of its signals.
func TestHostSandboxHoldsThePlugin(t *testing.T) {
	if abi := sandbox.ABI(); abi < 6 {
		t.Skipf("this kernel's Landlock ABI is %d: the scoping of signals needs 6", abi)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	must(t, os.MkdirAll(out, 0o700))
	secret := filepath.Join(dir, "secret")
	must(t, os.WriteFile(secret, []byte("the-secret"), 0o600))
	// The host is this test's process.
	host := strconv.Itoa(os.Getpid())
	bin := writeScript(t, dir, "plugin.sh", `
while read -r l; do case "$l" in NoNewPrivs*|Seccomp*|CapEff*|CapBnd*) echo "$l";; esac; done < /proc/self/status > `+out+`/status
cat `+secret+` > `+out+`/secret 2>&1
echo x > `+dir+`/beside 2>`+out+`/beside.err
kill -HUP `+host+` 2>`+out+`/kill.err; echo $? > `+out+`/kill
kill -HUP $PPID 2>`+out+`/killparent.err; echo $? > `+out+`/killparent
if test -e /proc/`+host+`; then echo visible; else echo hidden; fi > `+out+`/hostproc
`)
	read := probeScript(t, bin, out, Limits{}, time.Second)
	status := read("status")
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000"} {
		if !strings.Contains(status, want) {
			t.Errorf("the plugin's status lacks %q:\n%s", want, status)
		}
	}
	if s := read("secret"); strings.Contains(s, "the-secret") {
		t.Error("the plugin read a file outside its policy")
	}
	if _, err := os.Stat(filepath.Join(dir, "beside")); err == nil {
		t.Error("the plugin wrote outside its policy")
	}
	if k := strings.TrimSpace(read("kill")); k == "0" {
		t.Errorf("the plugin signalled the host (%s)", read("kill.err"))
	}
	if k := strings.TrimSpace(read("killparent")); k == "0" {
		t.Errorf("the plugin signalled its parent (%s)", read("killparent.err"))
	}
	// A root host gives the plugin a PID namespace with its own /proc:
	// the host's pid names nothing there.
	if v := strings.TrimSpace(read("hostproc")); os.Geteuid() == 0 && v != "hidden" {
		t.Errorf("the host's /proc/%s is %s to the plugin", host, v)
	}
}

// probeScript launches bin, a script that writes what it finds into the
// directory out, as a plugin (which it cannot be: its handshake fails
// within timeout), and returns a reader of its findings.
func probeScript(t *testing.T, bin, out string, limits Limits, timeout time.Duration) func(name string) string {
	t.Helper()
	l, sm := testLauncher(t)
	if _, err := l.Launch(context.Background(), Spec{Name: "p", Kind: "audit_sink", Path: bin, StartTimeout: timeout, Policy: Policy{WriteDirs: []string{out}}, Limits: limits},
		sinkclient.Plugin(sinkclient.Options{Sink: "p", Metrics: sm})); err == nil {
		t.Fatal("a script was started as a plugin")
	}
	return func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(out, name+".err"))
			t.Fatalf("the plugin did not write %s: %v (%s)", name, err, log)
		}
		return strings.TrimSpace(string(b))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestOnlyASinkGetsALaneAndOnlyItsOwn: an audit sink's process holds one
// end of a socket pair at laneFD, named in its environment; a plugin of a
// kind without a lane holds nothing there; and neither holds any other
// socket or pipe, not even one the host inherited from its own parent
// without close-on-exec.
func TestOnlyASinkGetsALaneAndOnlyItsOwn(t *testing.T) {
	// A descriptor this process holds without close-on-exec, as a host
	// started by a careless parent would.
	leakR, leakW, err := os.Pipe()
	must(t, err)
	defer leakR.Close()
	defer leakW.Close()
	leaked := 40
	must(t, syscall.Dup2(int(leakW.Fd()), leaked))
	defer syscall.Close(leaked)

	for _, tc := range []struct {
		kind string
		half plugin.Plugin
		lane bool
	}{
		{"audit_sink", sinkclient.Plugin(sinkclient.Options{Sink: "p", Metrics: sinkMetrics(t)}), true},
		{"model_loader", loader.PluginForHost(hclog.NewNullLogger()), false},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			must(t, os.MkdirAll(out, 0o700))
			bin := writeScript(t, dir, "plugin.sh", `
`+listDescriptors(out))
			l, _ := testLauncher(t)
			if _, err := l.Launch(context.Background(), Spec{Name: "p", Kind: tc.kind, Path: bin, StartTimeout: time.Second, Policy: Policy{WriteDirs: []string{out}}}, tc.half); err == nil {
				t.Fatal("a script was started as a plugin")
			}
			checkDescriptors(t, out, tc.lane)
		})
	}
}

// listDescriptors ends a probe script: it writes the lane's variable and
// the descriptors the plugin holds into out, for checkDescriptors.
func listDescriptors(out string) string {
	return `
echo "$VRAMWARD_RECORD_LANE_FD" > ` + out + `/lane
exec ls -l /proc/self/fd/ > ` + out + `/fds 2>&1
`
}

// checkDescriptors: the plugin holds a lane at laneFD, named in its
// environment, if and only if wantLane, and no other socket or pipe.
func checkDescriptors(t *testing.T, out string, wantLane bool) {
	t.Helper()
	env, err := os.ReadFile(filepath.Join(out, "lane"))
	must(t, err)
	fds, err := os.ReadFile(filepath.Join(out, "fds"))
	must(t, err)
	var lane string
	for _, line := range strings.Split(string(fds), "\n") {
		fd, target, ok := strings.Cut(line, " -> ")
		if !ok {
			continue
		}
		fd = fd[strings.LastIndex(fd, " ")+1:]
		if fd == strconv.Itoa(laneFD) {
			lane = target
		} else if strings.HasPrefix(target, "socket:") || strings.HasPrefix(target, "pipe:") {
			t.Errorf("the plugin holds fd %s, %s, which the host did not give it:\n%s", fd, target, fds)
		}
	}
	switch got := strings.TrimSpace(string(env)); {
	case wantLane && (got != strconv.Itoa(laneFD) || !strings.HasPrefix(lane, "socket:")):
		t.Fatalf("the sink's lane: VRAMWARD_RECORD_LANE_FD=%q, fd %d %q, want %[2]d and a socket:\n%s", got, laneFD, lane, fds)
	case !wantLane && (got != "" || lane != ""):
		t.Fatalf("a plugin without a lane got one: VRAMWARD_RECORD_LANE_FD=%q, fd %d %q", got, laneFD, lane)
	}
}

func sinkMetrics(t *testing.T) *sinkclient.Metrics {
	_, m := testLauncher(t)
	return m
}
