package bounded

import (
	"fmt"

	schemav1 "github.com/vramward/vramward/sdk/proto/schema/v1"
	"github.com/vramward/vramward/sdk/schema"
)

// PluginInfo checks what a plugin's Info answered, for every kind's client:
// its name and version within bounds, its config schema decoded. The
// error says why the answer is refused; the client wraps it in its kind's
// error as the plugin being unavailable.
func PluginInfo(name, version string, sch *schemav1.Schema) (schema.Schema, error) {
	if err := Info(name, version); err != nil {
		return nil, err
	}
	s, err := schema.FromProto(sch)
	if err != nil {
		return nil, fmt.Errorf("the plugin's config schema is unreadable: %w", err)
	}
	return s, nil
}
