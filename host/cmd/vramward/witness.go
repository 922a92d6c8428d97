package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/host/witness"
)

// cmdWitness runs a C2SP tlog-witness for the nodes' logs, or makes its key.
func cmdWitness(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("witness", stderr)
	keygen := fs.String("keygen", "", "make a witness key named `NAME` (e.g. witness.example/w1): write the private key to -key-file, print the public key")
	keyFile := fs.String("key-file", "", "the witness's private key `FILE` (0600)")
	listen := fs.String("listen", "127.0.0.1:7380", "the `ADDRESS` to serve add-checkpoint on")
	stateDir := fs.String("state", "", "the `DIR` keeping the latest checkpoint cosigned for each log")
	var logs fileList
	fs.Var(&logs, "log", "a node's identity key, or its public key `FILE` (state_dir/audit.pub): the logs this witness cosigns for; repeatable")
	logLevel := fs.String("log-level", "info", "trace, debug, info, warn or error")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "witness", "unexpected argument %q", fs.Arg(0))
	}
	if *keyFile == "" {
		return usageError(stderr, "witness", "-key-file is required")
	}
	if *keygen != "" {
		skey, vkey, err := witness.GenerateKey(*keygen)
		if err != nil {
			fmt.Fprintf(stderr, "vramward: %v\n", err)
			return 1
		}
		f, err := os.OpenFile(*keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.WriteString(skey + "\n")
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "vramward: witness key: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, vkey)
		return 0
	}
	if *stateDir == "" || len(logs) == 0 {
		return usageError(stderr, "witness", "-state and at least one -log are required")
	}
	skey, err := os.ReadFile(*keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: witness key: %v\n", err)
		return 1
	}
	known := map[string][]note.Verifier{}
	for _, l := range logs {
		v, err := identityKey(l)
		if err != nil {
			fmt.Fprintf(stderr, "vramward: -log %s: %v\n", l, err)
			return 1
		}
		known[v.Name()] = append(known[v.Name()], v)
	}
	log := newLogger(*logLevel, stderr).Named("witness")
	srv, err := witness.NewServer(witness.ServerOptions{Key: string(skey), StateDir: *stateDir, Logs: known, Logger: log})
	clear(skey)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("witness serving", "name", srv.Name(), "address", ln.Addr().String(), "logs", len(known))
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "vramward: %v\n", err)
		return 1
	}
	return 0
}

// identityKey reads a log's identity key: the key itself, or the identity
// line of a public key file.
func identityKey(arg string) (note.Verifier, error) {
	if !trail.IsKeyFile(arg) {
		return note.NewVerifier(strings.TrimSpace(arg))
	}
	keys, err := trail.ReadPublicKeys(arg)
	if err != nil {
		return nil, err
	}
	if keys.Identity == nil {
		return nil, errors.New("no identity line (a public key file written before identity keys: start the host once to add it)")
	}
	return keys.Identity, nil
}
