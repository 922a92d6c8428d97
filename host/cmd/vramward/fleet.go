package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/sdk/audit/chain"
)

// fleetNode is one inventoried node and what verifying it found.
type fleetNode struct {
	id    string
	key   note.Verifier
	files []string
	rep   trail.Report
	err   error
}

// readInventory reads the fleet's public keys: one line per node, the
// worker id and its key (state_dir/audit.pub), or the key alone (its name
// says the worker id); # starts a comment.
func readInventory(path string) ([]*fleetNode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	defer f.Close()
	var nodes []*fleetNode
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, trail.IdentityPrefix) {
			continue // an identity key line (audit.pub's second) is for witnesses
		}
		fields := strings.Fields(line)
		text := fields[len(fields)-1]
		v, err := note.NewVerifier(text)
		if err != nil || len(fields) > 2 {
			return nil, fmt.Errorf("%s:%d: want a worker id and its public key (vramward/<id>+<hash>+<base64>)", path, n)
		}
		id, ok := strings.CutPrefix(v.Name(), "vramward/")
		if !ok || (len(fields) == 2 && fields[0] != id) {
			return nil, fmt.Errorf("%s:%d: the key is for %q, not worker %q", path, n, v.Name(), fields[0])
		}
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("%s:%d: worker %q is listed twice (line %d)", path, n, id, prev)
		}
		seen[id] = n
		nodes = append(nodes, &fleetNode{id: id, key: v})
	}
	return nodes, sc.Err()
}

// fleetFiles maps each node to its trail files in dir: <id>.log, rotated
// <id>.log.N, or every file of a directory <id>/. Files no node claims are
// returned apart.
func fleetFiles(dir string, nodes []*fleetNode) (unknown []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("fleet directory: %w", err)
	}
	byID := map[string]*fleetNode{}
	for _, n := range nodes {
		byID[n.id] = n
	}
	for _, e := range entries {
		name, path := e.Name(), filepath.Join(dir, e.Name())
		if e.IsDir() {
			if n := byID[name]; n != nil {
				inner, _ := filepath.Glob(filepath.Join(path, "*"))
				n.files = append(n.files, inner...)
				continue
			}
			unknown = append(unknown, path)
			continue
		}
		id, _, _ := strings.Cut(name, ".log")
		if n := byID[id]; n != nil && strings.Contains(name, ".log") {
			n.files = append(n.files, path)
			continue
		}
		unknown = append(unknown, path)
	}
	return unknown, nil
}

// verifyFleet verifies every node's trail in dir against the inventory, in
// parallel across the cores, and prints one line per node.
func verifyFleet(dir, inventory string, live bool, accept map[string][]trail.SeqRange, stdout, stderr io.Writer) int {
	nodes, err := readInventory(inventory)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	unknown, err := fleetFiles(dir, nodes)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	work := make(chan *fleetNode)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				if len(n.files) == 0 {
					n.err = errors.New("no trail in the fleet directory")
					continue
				}
				n.rep, n.err = trail.VerifyFiles(trail.Options{Key: n.key, Live: live, AcceptLoss: accept[n.id]}, n.files...)
			}
		}()
	}
	for _, n := range nodes {
		work <- n
	}
	close(work)
	wg.Wait()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].id < nodes[j].id })
	code, failed := 0, 0
	for _, n := range nodes {
		switch {
		case len(n.files) == 0:
			fmt.Fprintf(stdout, "%s\tMISSING\tno trail in %s\n", n.id, dir)
			code, failed = 1, failed+1
		case n.err != nil:
			var ve *chain.Error
			if errors.As(n.err, &ve) {
				fmt.Fprintf(stdout, "%s\tFAILED\t%v\n", n.id, ve)
			} else {
				fmt.Fprintf(stdout, "%s\tERROR\t%v\n", n.id, n.err)
			}
			code, failed = 1, failed+1
		default:
			fmt.Fprintf(stdout, "%s\tOK\t%d records, seq %d to %d, %d checkpoints, the last at seq %d (tree size %d), epoch %d",
				n.id, n.rep.Records, n.rep.FirstSeq, n.rep.LastSeq, n.rep.Checkpoints, n.rep.LastAt, n.rep.Last.Size, n.rep.Epoch)
			if len(n.rep.Notes) > 0 {
				fmt.Fprintf(stdout, "; %d notes", len(n.rep.Notes))
			}
			fmt.Fprintln(stdout)
		}
	}
	for _, u := range unknown {
		fmt.Fprintf(stdout, "-\tUNKNOWN\t%s belongs to no node of the inventory\n", u)
		code = 1
	}
	fmt.Fprintf(stdout, "%d nodes: %d verified, %d failed or missing; %d files of no inventoried node\n", len(nodes), len(nodes)-failed, failed, len(unknown))
	return code
}
