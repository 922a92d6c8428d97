package daemon

import (
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

// refuseNewLogOverATrail refuses the start when the state dir holds no
// log and a file a sink writes already holds something.
func refuseNewLogOverATrail(cfg *config.Config, launcher *pluginhost.Launcher) error {
	if hostaudit.HasLog(cfg.Worker.StateDir) {
		return nil
	}
	for _, out := range sinkOutputs(cfg, launcher) {
		if st, err := os.Stat(out.path); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
			return &TrailExistsError{StateDir: cfg.Worker.StateDir, Sink: out.sink, Path: out.path, Bytes: st.Size()}
		}
	}
	return nil
}

// sinkTrails are the files the sinks write, for a start after a crash to
// roll the log forward over (hostaudit.Options.SinkTrails). A file the
// sink rotated last (PATH.1, as the file sink and audit verify name it)
// comes first: a rotation may have moved the records past the state there.
func sinkTrails(cfg *config.Config, launcher *pluginhost.Launcher) func() []string {
	return func() []string {
		var paths []string
		for _, out := range sinkOutputs(cfg, launcher) {
			if st, err := os.Lstat(out.path + ".1"); err == nil && st.Mode().IsRegular() {
				paths = append(paths, out.path+".1")
			}
			paths = append(paths, out.path)
		}
		return paths
	}
}

type sinkOutput struct{ sink, path string }

// sinkOutputs asks each sink's plugin for its schema (Info only, as
// validate does) and returns the files its config says it writes. A sink
// whose schema cannot be read is left to its start, which fails on its
// own.
func sinkOutputs(cfg *config.Config, launcher *pluginhost.Launcher) []sinkOutput {
	var outs []sinkOutput
	for _, s := range cfg.Audit.Sinks {
		sch, err := fetchSchema(launcher, cfg.Plugin(s.Plugin))
		if err != nil {
			continue
		}
		if cfg.DecodeUseConfig(s, sch).HasErrors() {
			continue
		}
		for _, path := range pathsOf(configValues(s), sch, schema.WrittenFile) {
			outs = append(outs, sinkOutput{sink: s.Name, path: path})
		}
	}
	return outs
}
