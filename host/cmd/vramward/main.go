// Command vramward is the host daemon and its tools.
//
//	vramward run      -config FILE       run the host until SIGTERM/SIGINT
//	vramward validate -config FILE       check a config, plugin config blocks included
//	vramward audit verify [-key-file K] [-copy FILE]... FILE...
//	vramward gguf inspect [-json] [-config FILE | -plugin PATH] MODEL
//	vramward version
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/daemon"
	"github.com/vramward/vramward/sdk/audit"
	"github.com/vramward/vramward/sdk/audit/chain"
	"github.com/vramward/vramward/sdk/handshake"
	"github.com/vramward/vramward/sdk/version"
)

const usage = `vramward: seal model weights in GPU memory and keep an audit trail of it.

Usage:
  vramward run      -config FILE [-log-level LEVEL]   run the host until SIGTERM or SIGINT; SIGHUP reopens sinks
  vramward validate -config FILE                      every check run makes before it starts, without side effects
  vramward audit verify [-key-file FILE] [-copy FILE]... TRAIL...
                                                    verify an audit trail (files in any order)
  vramward gguf inspect [-json] MODEL                 check a GGUF file and print what it holds
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
		if len(args) < 2 || args[1] != "verify" {
			return usageError(stderr, "audit verify", "want the subcommand verify")
		}
		return cmdVerify(args[2:], stdout, stderr)
	case "gguf":
		return cmdGGUF(args[1:], stdout, stderr)
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
	return daemon.Run(context.Background(), daemon.Options{
		Config: cfg, Logger: newLogger(*level, stderr), Version: version.Version, LogLevel: *level,
	})
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

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("audit verify", stderr)
	keyFile := fs.String("key-file", "", "the chain's verification key `FILE` (audit.chain_key_file); without it only order and links are checked")
	var copies fileList
	fs.Var(&copies, "copy", "another sink's copy of the same trail (a file, or a syslog receiver's file), verified too and compared: a trail that ends before its copy had its tail cut; repeatable")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if fs.NArg() == 0 {
		return usageError(stderr, "audit verify", "no TRAIL file given")
	}
	var key *chain.Key
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			fmt.Fprintf(stderr, "vramward: %v\n", err)
			return 1
		}
		k, err := chain.ParseKey(string(b))
		if err != nil {
			fmt.Fprintf(stderr, "vramward: %s: %v\n", *keyFile, err)
			return 1
		}
		key = &k
	}
	files, err := orderTrail(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	rep, ok := verifyTrail(key, files, "", stdout, stderr)
	if !ok {
		return 1
	}
	checked := "MACs verified with the key"
	if !rep.MACsChecked {
		checked = "order and links only (no -key-file)"
	}
	fmt.Fprintf(stdout, "OK: %d records, seq %d to %d, epochs %d to %d; %s\n", rep.Records, rep.FirstSeq, rep.LastSeq, rep.FirstEpoch, rep.LastEpoch, checked)
	if rep.PartialStart {
		fmt.Fprintf(stdout, "note: the trail starts at seq %d; earlier records were not given (rotated away?)\n", rep.FirstSeq)
	}
	for _, s := range rep.Segments {
		fmt.Fprintf(stdout, "note: %s:%d: a new chain segment starts at seq %d after an unclean stop; seqs %d to %d were lost with the host's memory or are missing\n",
			s.Source, s.Line, s.StartSeq, s.AfterSeq+1, s.StartSeq-1)
	}
	if rep.Records > 0 && rep.LastType != audit.HostStopped {
		fmt.Fprintf(stdout, "note: the last record is %s, not HostStopped: the host is running, was killed, or the tail was cut (compare another sink with -copy)\n", rep.LastType)
	}
	code := 0
	for _, c := range copies {
		crep, ok := verifyTrail(key, []string{c}, "copy "+c+": ", stdout, stderr)
		if !ok {
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "copy %s: OK: %d records, seq %d to %d\n", c, crep.Records, crep.FirstSeq, crep.LastSeq)
		switch {
		case crep.LastSeq > rep.LastSeq:
			fmt.Fprintf(stdout, "FAILED: the trail ends at seq %d but %s holds records up to seq %d: the trail's tail was cut (or it was read before the copy)\n", rep.LastSeq, c, crep.LastSeq)
			code = 1
		case crep.LastSeq < rep.LastSeq:
			fmt.Fprintf(stdout, "note: %s ends at seq %d, before the trail (%d): that copy is behind\n", c, crep.LastSeq, rep.LastSeq)
		case !bytes.Equal(crep.LastMAC, rep.LastMAC):
			fmt.Fprintf(stdout, "FAILED: the trail and %s both end at seq %d with different MACs: they are not the same chain\n", c, rep.LastSeq)
			code = 1
		}
	}
	return code
}

// verifyTrail verifies files as one trail and prints a failure; prefix
// names a copy.
func verifyTrail(key *chain.Key, files []string, prefix string, stdout, stderr io.Writer) (chain.Report, bool) {
	rep, err := chain.VerifyFiles(key, files...)
	if err != nil {
		var ve *chain.Error
		if errors.As(err, &ve) {
			fmt.Fprintf(stdout, "%sFAILED: %v\n", prefix, ve)
		} else {
			fmt.Fprintf(stderr, "vramward: %s%v\n", prefix, err)
		}
		return rep, false
	}
	return rep, true
}

// fileList collects a repeatable flag.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

// orderTrail sorts trail files by the seq of their first record, so that
// rotated files can be given in any order (a shell glob puts audit.log first).
func orderTrail(files []string) ([]string, error) {
	type f struct {
		name string
		seq  uint64
	}
	var out []f
	for _, name := range files {
		fh, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		br := bufio.NewReader(fh)
		line, _ := br.ReadString('\n')
		fh.Close()
		seq := ^uint64(0) // unreadable first lines sort last; the verifier reports them
		if e, err := audit.ParseJSON(chain.RecordOf([]byte(strings.TrimSuffix(line, "\n")))); err == nil {
			seq = e.Seq
		}
		out = append(out, f{name, seq})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	names := make([]string, len(out))
	for i, x := range out {
		names[i] = x.name
	}
	return names, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
