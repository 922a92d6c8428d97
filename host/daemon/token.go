package daemon

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/vramward/vramward/host/config"
)

// The worker token: read from token_file or token_env once, handed to the
// re-executed host in a sealed memfd, never left in the environ.

// TokenFDEnv names the descriptor holding the token after vramward run
// re-executed itself without the token's variable.
const TokenFDEnv = "VRAMWARD_TOKEN_FD"

// minTokenBytes is the shortest worker token accepted from any source.
const minTokenBytes = 16

// readToken reads the worker token from its credential, file or variable,
// with the same rules for each: at least minTokenBytes, and a file not
// readable by group or others. The variable is removed from the host's
// environment once read, so nothing the host starts later can inherit it.
func readToken(w config.Worker) ([]byte, error) {
	var tok []byte
	var from string
	switch {
	case w.TokenEnv != "" && os.Getenv(TokenFDEnv) != "":
		// vramward run re-executed itself without the variable (see its
		// dropTokenEnv) and holds the token in this descriptor.
		from = "environment variable " + w.TokenEnv
		fd, err := strconv.Atoi(os.Getenv(TokenFDEnv))
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("worker token: %s=%q is not a descriptor", TokenFDEnv, os.Getenv(TokenFDEnv))
		}
		f := os.NewFile(uintptr(fd), "token")
		b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
		f.Close()
		_ = os.Unsetenv(TokenFDEnv)
		if err != nil {
			return nil, fmt.Errorf("worker token: read it back: %w", err)
		}
		tok = []byte(strings.TrimSpace(string(b)))
		clear(b)
	case w.TokenEnv != "":
		from = "environment variable " + w.TokenEnv
		v, ok := os.LookupEnv(w.TokenEnv)
		if !ok || strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("worker token: %s is empty or unset", from)
		}
		tok = []byte(strings.TrimSpace(v))
		_ = os.Unsetenv(w.TokenEnv)
	case w.TokenCredential != "":
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return nil, fmt.Errorf("worker token: token_credential %q needs $CREDENTIALS_DIRECTORY (systemd's LoadCredential= sets it)", w.TokenCredential)
		}
		path := filepath.Join(dir, w.TokenCredential)
		from = path
		b, err := readSecretFile(path)
		if err != nil {
			return nil, err
		}
		tok = b
	default:
		from = w.TokenFile
		b, err := readSecretFile(w.TokenFile)
		if err != nil {
			return nil, err
		}
		tok = b
	}
	if len(tok) < minTokenBytes {
		return nil, fmt.Errorf("worker token: %s holds %d bytes; use at least %d random bytes", from, len(tok), minTokenBytes)
	}
	return tok, nil
}

// readSecretFile reads a token file that must be a regular file not
// readable by group or others.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("worker token: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("worker token: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("worker token: %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("worker token: %s is readable by group or others (mode %04o); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("worker token: %w", err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}
