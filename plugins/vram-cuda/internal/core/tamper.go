//go:build vramward_tamper

package core

// Corrupt flips one byte of a resident shard. It exists only in binaries
// built with the vramward_tamper tag (tests of tamper detection), never in
// release builds.
func (c *Core) Corrupt(id string, off uint64) error { return c.corrupt(id, off) }
