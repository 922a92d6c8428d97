package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/status"
)

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	cfgPath := fs.String("config", "", "the host's config `FILE` (its state_dir holds the status socket)")
	socket := fs.String("socket", "", "the status socket `PATH` (state_dir/status.sock), instead of -config")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "status", "unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *cfgPath == "" && *socket == "":
		return usageError(stderr, "status", "give -config FILE or -socket PATH")
	case *cfgPath != "" && *socket != "":
		return usageError(stderr, "status", "give -config or -socket, not both")
	case *cfgPath != "":
		cfg, _, diags := config.Load(*cfgPath)
		if diags.HasErrors() {
			fmt.Fprintf(stderr, "vramward: %s\n", diags.Error())
			return 1
		}
		*socket = filepath.Join(cfg.Worker.StateDir, status.SocketName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := status.Fetch(ctx, *socket)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: the host does not answer: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	} else {
		printStatus(stdout, st)
	}
	if st.Host.State != status.Serving {
		return 1
	}
	return 0
}

func printStatus(w io.Writer, st status.Status) {
	h := st.Host
	fmt.Fprintf(w, "Host %s: %s since %s", h.WorkerID, strings.ToUpper(h.State), h.Since.Local().Format(time.DateTime))
	if h.Reason != "" {
		fmt.Fprintf(w, " (%s)", h.Reason)
	}
	fmt.Fprintf(w, "\n  version %s, config sha256 %s, started %s\n", h.Version, short(h.ConfigSHA256, 12), h.Started.Local().Format(time.DateTime))
	fmt.Fprintf(w, "  secret erasure: %s\n", h.SecretErasure)
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	section := func(title, header string) {
		tw.Flush()
		fmt.Fprintf(w, "\n%s\n", title)
		fmt.Fprintln(tw, header)
	}
	section("Plugins", "NAME\tKIND\tPID\tRUNNING\tVERSION\tSHA256\tPINNED\tSANDBOXED\tRESTARTS\tLAST CRASH")
	for _, p := range st.Plugins {
		pinned := "no"
		if p.PinnedSHA256 != "" {
			pinned = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%s\t%s\t%s\t%v\t%d\t%s\n", p.Name, p.Kind, p.PID, p.Running, dash(p.Version), short(p.RunningSHA256, 12), pinned, p.Sandboxed, p.Restarts, dash(p.LastCrash))
	}
	// What the host enforces on each plugin: a line each, too long for the
	// table.
	tw.Flush()
	fmt.Fprintf(w, "\nPlugin sandboxes\n")
	for _, p := range st.Plugins {
		fmt.Fprintf(w, "  %s: %s\n", p.Name, dash(p.Sandbox))
	}
	section("Audit sinks", "NAME\tSTATE\tLANE\tQUEUE\tSPOOL BYTES\tLAST ACKED SEQ\tFAILURES\tLAST ERROR")
	for _, s := range st.Sinks {
		lane := "grpc"
		if s.RecordLane {
			lane = "record"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.State, lane, s.QueueDepth, s.SpoolBytes, s.LastSeq, failures(s.Failures), dash(short(s.LastError, 60)))
	}
	section("Models", "NAME\tSHARD\tSTATE\tREASON")
	for _, m := range st.Models {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.ShardID, m.State, dash(short(m.Reason, 80)))
	}
	section("Shards", "SHARD\tMODEL\tSTATE\tDEVICE\tBACKEND\tBYTES\tDIGEST\tSEALED\tLAST VERIFIED\tRESULT")
	for _, s := range st.Shards {
		verified := "-"
		if s.LastVerified != nil {
			verified = s.LastVerified.Local().Format(time.TimeOnly)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", s.ShardID, s.Model, s.State, s.Device, s.Backend, s.Bytes, short(s.Digest, 16),
			s.SealedAt.Local().Format(time.TimeOnly), verified, dash(s.VerifyResult))
	}
	tw.Flush()
	t := st.Trail
	fmt.Fprintf(w, "\nAudit trail: seq %d, epoch %d", t.Seq, t.Epoch)
	if !t.LastCheckpointAt.IsZero() {
		fmt.Fprintf(w, ", last checkpoint at seq %d (tree size %d), %s", t.LastCheckpointSeq, t.LastCheckpointSize, t.LastCheckpointAt.Local().Format(time.TimeOnly))
	}
	fmt.Fprintln(w)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func failures(m map[string]uint64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
