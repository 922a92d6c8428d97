package daemon

import (
	"encoding/json"
	"fmt"
	"os"

	hostaudit "github.com/vramward/vramward/host/audit"
	"github.com/vramward/vramward/host/config"
	"github.com/vramward/vramward/host/pluginhost"
	"github.com/vramward/vramward/sdk/schema"
)

// TrailExistsError is a start that would begin a new log (the state dir
// holds none) while a sink's output already holds records: the state dir
// was lost or replaced, and the new log would follow another one's records
// in the same file, with its own key, as if nothing had happened.
type TrailExistsError struct {
	StateDir, Sink, Path string
	Bytes                int64
}

func (e *TrailExistsError) Error() string {
	return fmt.Sprintf("state_dir %s holds no audit log, but sink %q's output %s already holds %d bytes of one: the state dir was lost or replaced. "+
		"Restore it (chain.state.a, chain.state.b, audit.pub, log.key) to continue that log; or keep the old trail and its public key, move the trail away, "+
		"and start again; or start a new log after it on purpose with `vramward run -new-log`", e.StateDir, e.Sink, e.Path, e.Bytes)
}

// refuseNewLogOverATrail asks each sink's plugin for its schema (Info only,
// as validate does) when the state dir holds no log, and refuses the start
// when a file a sink writes already holds something. A sink whose schema
// cannot be read is left to its start, which fails on its own.
func refuseNewLogOverATrail(cfg *config.Config, launcher *pluginhost.Launcher) error {
	if hostaudit.HasLog(cfg.Worker.StateDir) {
		return nil
	}
	for _, s := range cfg.Audit.Sinks {
		sch, err := fetchSchema(launcher, cfg.Plugin(s.Plugin))
		if err != nil {
			continue
		}
		if cfg.DecodeUseConfig(s, sch).HasErrors() {
			continue
		}
		vals := map[string]any{}
		if err := json.Unmarshal(s.ConfigJSON, &vals); err != nil {
			continue
		}
		for _, a := range sch {
			path, _ := vals[a.Name].(string)
			if a.Path != schema.WrittenFile || path == "" {
				continue
			}
			if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
				return &TrailExistsError{StateDir: cfg.Worker.StateDir, Sink: s.Name, Path: path, Bytes: st.Size()}
			}
		}
	}
	return nil
}
