package schema

import (
	"encoding/json"
	"fmt"
	"time"

	schemav1 "github.com/vramward/vramward/sdk/proto/schema/v1"
)

// ToProto converts a schema for the wire.
func ToProto(s Schema) *schemav1.Schema {
	out := &schemav1.Schema{}
	for _, a := range s {
		pa := &schemav1.Attribute{
			Name:        a.Name,
			Type:        schemav1.Type(a.Type),
			Required:    a.Required,
			Description: a.Description,
			Path:        schemav1.PathKind(a.Path),
		}
		if a.Default != nil {
			d, err := a.Type.coerce(a.Default)
			if err == nil {
				if dur, ok := d.(time.Duration); ok {
					d = dur.String()
				}
				b, _ := json.Marshal(d)
				pa.DefaultJson = string(b)
			}
		}
		out.Attributes = append(out.Attributes, pa)
	}
	return out
}

// Caps of a schema received from a plugin.
const (
	maxAttributes       = 256
	maxDescriptionBytes = 4096
	maxDefaultBytes     = 64 << 10
)

// FromProto converts a schema received from a plugin, refusing one that does
// not pass Check.
func FromProto(p *schemav1.Schema) (Schema, error) {
	if n := len(p.GetAttributes()); n > maxAttributes {
		return nil, fmt.Errorf("schema: %d attributes; at most %d are accepted", n, maxAttributes)
	}
	for _, pa := range p.GetAttributes() {
		if len(pa.GetDescription()) > maxDescriptionBytes || len(pa.GetDefaultJson()) > maxDefaultBytes {
			return nil, fmt.Errorf("schema: attribute %.64q: description or default over %d and %d bytes", pa.GetName(), maxDescriptionBytes, maxDefaultBytes)
		}
	}
	var s Schema
	for _, pa := range p.GetAttributes() {
		a := Attribute{
			Name:        pa.GetName(),
			Type:        Type(pa.GetType()),
			Required:    pa.GetRequired(),
			Description: pa.GetDescription(),
			Path:        PathKind(pa.GetPath()),
		}
		if pa.GetDefaultJson() != "" {
			d, err := a.Type.decodeJSON(json.RawMessage(pa.GetDefaultJson()))
			if err != nil {
				return nil, fmt.Errorf("schema: default of attribute %q: %w", a.Name, err)
			}
			a.Default = d
		}
		s = append(s, a)
	}
	if err := s.Check(); err != nil {
		return nil, err
	}
	return s, nil
}
