package main

import (
	"golang.org/x/mod/sumdb/note"

	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vramward/vramward/host/audit"
	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/host/witness"
	"github.com/vramward/vramward/sdk/audit/chain"
)

func cmdAudit(args []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "verify":
		return cmdVerify(args[1:], stdout, stderr)
	case "checkpoint":
		return cmdCheckpoint(args[1:], stdout, stderr)
	case "prove":
		return cmdProve(args[1:], stdout, stderr)
	}
	return usageError(stderr, "audit verify", "want a subcommand: verify, checkpoint or prove")
}

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("audit verify", stderr)
	key := fs.String("key", "", "the log's public key: the `FILE` state_dir/audit.pub (kept off the node), or the key itself")
	var copies, ckpts fileList
	fs.Var(&copies, "copy", "another copy of the same trail (another sink's file, a syslog receiver's file), verified too and compared seq by seq; repeatable")
	fs.Var(&ckpts, "checkpoint", "a signed checkpoint kept off the node (a witness's, a cron job's copy of state_dir/checkpoint) the trail must be consistent with; repeatable")
	live := fs.Bool("live", false, "the host is still running: records after the last checkpoint are noted, not failed (a loss still fails)")
	var losses, witnessKeys fileList
	fs.Var(&losses, "accept-loss", "accept the seqs `FROM-TO` that an AuditRecovered declares lost in a crash, exactly as a failed verify names them (with -fleet: ID:FROM-TO); repeatable")
	fs.Var(&witnessKeys, "witness-key", "a witness's public `KEY` (or a file holding it): every cosignature by it must verify, and a checkpoint must be cosigned by -quorum of these; repeatable")
	quorum := fs.Int("quorum", 1, "with -witness-key: how many of the witnesses must have cosigned one checkpoint")
	fleet := fs.String("fleet", "", "verify every node's trail in `DIR` (a relay's directory: <worker id>.log* or <worker id>/), with -keys")
	keys := fs.String("keys", "", "with -fleet: the inventory `FILE` of the nodes' public keys, one \"<worker id> <key>\" a line")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if *fleet != "" || *keys != "" {
		switch {
		case *fleet == "" || *keys == "":
			return usageError(stderr, "audit verify", "-fleet and -keys go together")
		case *key != "" || fs.NArg() > 0 || len(copies) > 0 || len(ckpts) > 0:
			return usageError(stderr, "audit verify", "-fleet takes no -key, -copy, -checkpoint or TRAIL")
		}
		accept, err := fleetLosses(losses)
		if err != nil {
			return usageError(stderr, "audit verify", "-accept-loss: %v", err)
		}
		return verifyFleet(*fleet, *keys, *live, accept, stdout, stderr)
	}
	accept, err := parseLosses(losses)
	if err != nil {
		return usageError(stderr, "audit verify", "-accept-loss: %v", err)
	}
	if *key == "" {
		return usageError(stderr, "audit verify", "-key is required (state_dir/audit.pub, kept off the node)")
	}
	if fs.NArg() == 0 {
		return usageError(stderr, "audit verify", "no TRAIL file given")
	}
	v, _, err := trail.ReadVerifierKey(*key)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	opts := trail.Options{Key: v, Live: *live, Keep: len(copies) > 0, AcceptLoss: accept, Quorum: *quorum}
	for _, k := range witnessKeys {
		wv, err := readWitnessKey(k)
		if err != nil {
			return usageError(stderr, "audit verify", "-witness-key %s: %v", k, err)
		}
		opts.Witnesses = append(opts.Witnesses, wv)
	}
	if *quorum < 1 || len(witnessKeys) > 0 && *quorum > len(witnessKeys) {
		return usageError(stderr, "audit verify", "-quorum %d: want 1 to the number of -witness-key given", *quorum)
	}

	for _, c := range ckpts {
		data, err := os.ReadFile(c)
		if err != nil {
			fmt.Fprintf(stderr, "vramward: %v\n", err)
			return 1
		}
		opts.Checkpoints = append(opts.Checkpoints, trail.External{Name: c, Note: data})
	}
	rep, ok := verifyTrail(opts, fs.Args(), "", stdout, stderr)
	if !ok {
		return 1
	}
	fmt.Fprintf(stdout, "OK: %d records, seq %d to %d, tree size %d, epochs 0 to %d, %d signed checkpoints; the last at seq %d\n",
		rep.Records, rep.FirstSeq, rep.LastSeq, rep.TreeSize, rep.Epoch, rep.Checkpoints, rep.LastAt)
	if len(opts.Witnesses) > 0 {
		fmt.Fprintf(stdout, "witnessed: the checkpoint of tree size %d is cosigned by at least %d of the %d witnesses given\n", rep.Cosigned.Size, *quorum, len(opts.Witnesses))
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	if len(copies) == 0 && len(ckpts) == 0 && len(witnessKeys) == 0 {
		fmt.Fprintln(stdout, noOffNodeWarning)
	}
	code := 0
	for _, c := range copies {
		copts := opts
		copts.Resends = true // a receiver's file may hold what its transport sent twice
		crep, ok := verifyTrail(copts, []string{c}, "copy "+c+": ", stdout, stderr)
		if !ok {
			code = 1
			continue
		}
		notes, err := trail.Compare(&rep, &crep, c)
		if err != nil {
			fmt.Fprintf(stdout, "FAILED: %v\n", err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "copy %s: OK: %d records, the same as the trail's\n", c, crep.Records)
		for _, n := range append(crep.Notes, notes...) {
			fmt.Fprintf(stdout, "note: copy %s: %s\n", c, n)
		}
	}
	return code
}

// noOffNodeWarning says what the public key alone cannot show.
const noOffNodeWarning = "warning: verified against the public key alone (no -copy, -checkpoint or -witness-key): a trail cut back to any of its checkpoints, or rolled back to an earlier state, verifies the same (README, \"Threat model\")"

// verifyTrail verifies files as one trail and prints a failure; prefix
// names a copy.
func verifyTrail(opts trail.Options, files []string, prefix string, stdout, stderr io.Writer) (trail.Report, bool) {
	rep, err := trail.VerifyFiles(opts, files...)
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

func cmdCheckpoint(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("audit checkpoint", stderr)
	cfgPath := fs.String("config", "", "the host's config `FILE` (for its state_dir)")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if *cfgPath == "" {
		return usageError(stderr, "audit checkpoint", "-config is required")
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "audit checkpoint", "unexpected argument %q", fs.Arg(0))
	}
	cfg, _, diags := config.Load(*cfgPath)
	if diags.HasErrors() {
		fmt.Fprintf(stderr, "vramward: %s\n", diags.Error())
		return 1
	}
	path := filepath.Join(cfg.Worker.StateDir, audit.CheckpointFile)
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v (the host writes it at its first checkpoint)\n", err)
		return 1
	}
	if _, err := trail.ParseCheckpoint(data); err != nil {
		fmt.Fprintf(stderr, "vramward: %s: %v\n", path, err)
		return 1
	}
	_, _ = stdout.Write(data)
	return 0
}

func cmdProve(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("audit prove", stderr)
	key := fs.String("key", "", "the log's public key: the `FILE` state_dir/audit.pub, or the key itself")
	check := fs.String("check", "", "check the proof in `FILE` instead of making one")
	var losses, witnessKeys fileList
	fs.Var(&losses, "accept-loss", "accept the seqs `FROM-TO` a crash lost, as audit verify does; repeatable")
	fs.Var(&witnessKeys, "witness-key", "prove against the last checkpoint this witness `KEY` cosigned (with -check: require its cosignature); repeatable")
	quorum := fs.Int("quorum", 1, "with -witness-key: how many of the witnesses must have cosigned the checkpoint")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	accept, err := parseLosses(losses)
	if err != nil {
		return usageError(stderr, "audit prove", "-accept-loss: %v", err)
	}
	if *key == "" {
		return usageError(stderr, "audit prove", "-key is required")
	}
	var witnesses []note.Verifier
	for _, k := range witnessKeys {
		wv, err := readWitnessKey(k)
		if err != nil {
			return usageError(stderr, "audit prove", "-witness-key %s: %v", k, err)
		}
		witnesses = append(witnesses, wv)
	}
	var seq uint64
	if *check != "" {
		if fs.NArg() > 0 {
			return usageError(stderr, "audit prove", "-check takes no other argument")
		}
	} else {
		if fs.NArg() < 2 {
			return usageError(stderr, "audit prove", "want SEQ and the TRAIL files")
		}
		var err error
		if seq, err = strconv.ParseUint(fs.Arg(0), 10, 64); err != nil || seq == 0 {
			return usageError(stderr, "audit prove", "SEQ %q is not a record's seq", fs.Arg(0))
		}
	}
	keys, err := trail.ReadPublicKeys(*key)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	if *check != "" {
		data, err := os.ReadFile(*check)
		if err != nil {
			fmt.Fprintf(stderr, "vramward: %v\n", err)
			return 1
		}
		p, err := trail.ParseProof(data)
		if err == nil {
			var c trail.Checkpoint
			if c, err = p.Check(keys, witnesses, *quorum); err == nil {
				r, _ := chain.Check(p.Record)
				by := fmt.Sprintf("signed by epoch %d's key", c.Epoch)
				if len(witnesses) > 0 {
					by = fmt.Sprintf("signed by the log's identity key and cosigned by %d of %d witnesses", *quorum, len(witnesses))
				}
				fmt.Fprintf(stdout, "OK: seq %d (%s) is leaf %d of the log %s at tree size %d, checkpoint %s\n",
					r.Event.Seq, r.Event.Type, p.Index, c.Origin, c.Size, by)
				return 0
			}
		}
		fmt.Fprintf(stdout, "FAILED: %s: %v\n", *check, err)
		return 1
	}
	files := fs.Args()[1:]
	rep, ok := verifyTrail(trail.Options{Key: keys.First, Keep: true, Live: true, AcceptLoss: accept, Witnesses: witnesses, Quorum: *quorum}, files, "", stdout, stderr)
	if !ok {
		return 1
	}
	record, err := findRecord(files, seq)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	p, err := trail.Prove(&rep, seq, record)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	out, err := p.Marshal()
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}

// findRecord returns the record with seq from the trail files.
func findRecord(files []string, seq uint64) ([]byte, error) {
	var found []byte
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		_ = chain.ReadRecords(chain.Source{Name: name, R: f}, func(r chain.Record) error {
			if r.Event.Seq == seq && !r.Shortened {
				found = r.Event.AppendJSON(nil)
				return errFound
			}
			return nil
		})
		f.Close()
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("seq %d is not in %s", seq, strings.Join(files, " "))
}

var errFound = errors.New("found")

// readWitnessKey reads a witness's public key, given as the key or a file.
func readWitnessKey(arg string) (note.Verifier, error) {
	text := arg
	if trail.IsKeyFile(arg) {
		data, err := os.ReadFile(arg)
		if err != nil {
			return nil, err
		}
		text = string(data)
	}
	return witness.NewVerifier(text)
}

func parseLosses(list []string) ([]trail.SeqRange, error) {
	var out []trail.SeqRange
	for _, v := range list {
		r, err := trail.ParseSeqRange(v)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// fleetLosses reads -accept-loss ID:FROM-TO, by worker id.
func fleetLosses(list []string) (map[string][]trail.SeqRange, error) {
	out := map[string][]trail.SeqRange{}
	for _, v := range list {
		id, rng, ok := strings.Cut(v, ":")
		if !ok || id == "" {
			return nil, fmt.Errorf("%q: with -fleet, name the node: ID:FROM-TO", v)
		}
		r, err := trail.ParseSeqRange(rng)
		if err != nil {
			return nil, err
		}
		out[id] = append(out[id], r)
	}
	return out, nil
}

// fileList collects a repeatable flag.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }
