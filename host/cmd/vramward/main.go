// Command vramward is the host daemon and its tools.
//
//	vramward run      -config FILE       run the host until SIGTERM/SIGINT
//	vramward validate -config FILE       check a config, plugin config blocks included
//	vramward audit verify -key K [-copy FILE]... [-checkpoint FILE]... TRAIL...
//	vramward status [-json] [-config FILE | -socket PATH]
//	vramward audit checkpoint -config FILE
//	vramward audit prove -key K SEQ TRAIL... | -key K -check PROOF
//	vramward gguf inspect [-json] [-config FILE | -plugin PATH] MODEL
//	vramward version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"
	"golang.org/x/sys/unix"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/daemon"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/version"
)

const usage = `vramward: seal model weights in GPU memory and keep an audit trail of it.

Usage:
  vramward run      -config FILE [-log-level LEVEL]   run the host until SIGTERM or SIGINT; SIGHUP reopens sinks
  vramward validate -config FILE                      every check run makes before it starts, without side effects
  vramward audit verify -key KEY [-copy FILE]... [-checkpoint FILE]... TRAIL...
                                                    verify an audit trail with the log's public key
  vramward status [-json] -config FILE | -socket PATH what the running host holds, sealed and verified
  vramward audit checkpoint -config FILE              print the latest signed checkpoint (for a witness)
  vramward audit prove -key KEY SEQ TRAIL...          print an inclusion proof of one record
  vramward gguf inspect [-json] MODEL                 check a GGUF file and print what it holds
  vramward witness -key-file F -state DIR -log KEY... cosign the nodes' checkpoints off the node (C2SP tlog-witness)
  vramward version                                    print versions

Run "vramward COMMAND -help" for a command's flags.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return daemon.ExitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "gguf":
		return cmdGGUF(args[1:], stdout, stderr)
	case "witness":
		return cmdWitness(args[1:], stdout, stderr)
	case "version":
		fs := newFlags("version", stderr)
		if code, stop := parseFlags(fs, args[1:]); stop {
			return code
		}
		if fs.NArg() > 0 {
			return usageError(stderr, "version", "unexpected argument %q", fs.Arg(0))
		}
		fmt.Fprintf(stdout, "vramward %s (plugin SDK %s, plugin protocol %d)\n", version.Version, version.SDK, handshake.ProtocolVersion)
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "vramward: unknown command %q\n\n%s", args[0], usage)
	return daemon.ExitUsage
}

// parseFlags returns an exit code when the command should stop (help or
// a bad flag).
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return daemon.ExitUsage, true
	}
	return 0, false
}

func newLogger(level string, out io.Writer) hclog.Logger {
	f, ok := out.(*os.File)
	return hclog.New(&hclog.LoggerOptions{
		Name:  "vramward",
		Level: hclog.LevelFromString(level),
		// JSON for log collectors; readable text on a terminal.
		JSONFormat: !ok || !isatty.IsTerminal(f.Fd()),
		Output:     out,
	})
}

// configFlag checks the -config value and that no argument follows the
// flags; it returns an exit code when the command line is bad.
func configFlag(fs *flag.FlagSet, name, path string, stderr io.Writer) (int, bool) {
	if path == "" {
		return usageError(stderr, name, "-config FILE is required"), false
	}
	if fs.NArg() > 0 {
		return usageError(stderr, name, "unexpected argument %q", fs.Arg(0)), false
	}
	return 0, true
}

func loadConfig(path string, stderr io.Writer) (*config.Config, bool) {
	cfg, _, diags := config.Load(path)
	if len(diags) > 0 {
		fmt.Fprint(stderr, config.Format(diags))
	}
	return cfg, !diags.HasErrors()
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	cfgPath := fs.String("config", "", "the HCL config `FILE`")
	level := fs.String("log-level", envOr("VRAMWARD_LOG_LEVEL", "info"), "`LEVEL`: trace, debug, info, warn or error (env VRAMWARD_LOG_LEVEL)")
	newLog := fs.Bool("new-log", false, "start a new audit log although the state dir holds none and a sink's output already holds records (the state dir was lost): the new log's records follow the old ones")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if code, ok := configFlag(fs, "run", *cfgPath, stderr); !ok {
		return code
	}
	if !validLogLevel(*level) {
		return usageError(stderr, "run", "-log-level %q: want one of %s", *level, strings.Join(logLevels, ", "))
	}
	*level = strings.ToLower(*level)
	cfg, ok := loadConfig(*cfgPath, stderr)
	if !ok {
		return daemon.ExitStartup
	}
	closeToChildren()
	if err := dropTokenEnv(cfg.Worker.TokenEnv); err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return daemon.ExitStartup
	}
	return daemon.Run(context.Background(), daemon.Options{
		Config: cfg, Logger: newLogger(*level, stderr), Version: version.Version, LogLevel: *level, NewLog: *newLog,
	})
}

// closeToChildren makes this process non-dumpable: its /proc/PID/mem,
// environ and the rest become root's, and no process of the same user can
// ptrace it; a plugin, which the host's sandbox leaves without any
// capability, cannot read the host's memory even when both run as root.
func closeToChildren() {
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}

// dropTokenEnv takes the worker token out of the kernel's copy of the
// environment, which unsetenv does not change (/proc/PID/environ keeps it
// for the process's life): the host re-executes itself without the
// variable and hands the token over in a sealed memfd. It returns only on
// failure, or when there is nothing to do.
func dropTokenEnv(name string) error {
	v, ok := os.LookupEnv(name)
	if name == "" || !ok {
		return nil // no variable: readToken says what is wrong, if anything
	}
	fd, err := unix.MemfdCreate("vramward-token", unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("worker token: memfd: %w", err)
	}
	if _, err := unix.Write(fd, []byte(v)); err != nil {
		return fmt.Errorf("worker token: memfd: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		return fmt.Errorf("worker token: seal the memfd: %w", err)
	}
	env := []string{daemon.TokenFDEnv + "=" + strconv.Itoa(fd)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, name+"=") && !strings.HasPrefix(kv, daemon.TokenFDEnv+"=") {
			env = append(env, kv)
		}
	}
	return fmt.Errorf("worker token: re-execute without %s: %w", name, unix.Exec("/proc/self/exe", os.Args, env))
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	cfgPath := fs.String("config", "", "the HCL config `FILE`")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if code, ok := configFlag(fs, "validate", *cfgPath, stderr); !ok {
		return code
	}
	cfg, ok := loadConfig(*cfgPath, stderr)
	if !ok {
		return 1
	}
	closeToChildren()
	diags := daemon.Preflight(cfg)
	if !diags.HasErrors() {
		// Plugins are started (to read their schemas) only when their
		// binaries passed the checks run makes.
		diags = append(diags, daemon.CheckPluginConfigs(cfg, newLogger("warn", stderr))...)
	}
	if len(diags) > 0 {
		fmt.Fprint(stderr, config.Format(diags))
	}
	if diags.HasErrors() {
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid (%d plugins, %d audit sinks, %d models)\n", *cfgPath, len(cfg.Plugins), len(cfg.Audit.Sinks), len(cfg.Models))
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
