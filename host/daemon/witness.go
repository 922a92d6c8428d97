package daemon

import (
	"fmt"
	"net/http"
	"time"

	hostaudit "github.com/vramward/vramward/host/audit"
	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/witness"
)

// witnessClients makes a client for each configured witness.
func witnessClients(list []*config.Witness) ([]hostaudit.Witness, error) {
	var out []hostaudit.Witness
	hc := &http.Client{Timeout: 15 * time.Second}
	for _, w := range list {
		key, err := witness.NewVerifier(w.Key)
		if err != nil {
			return nil, fmt.Errorf("witness %q: key: %w", w.Name, err)
		}
		out = append(out, hostaudit.Witness{Name: w.Name, Client: &witness.Client{URL: w.URL, HTTP: hc, Key: key}})
	}
	return out, nil
}
