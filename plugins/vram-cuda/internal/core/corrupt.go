package core

import "fmt"

// corrupt flips the byte at off of shard id in device memory, for the
// tamper tests (core's own, and binaries built with vramward_tamper).
func (c *Core) corrupt(id string, off uint64) error {
	sh, err := c.lookup(id)
	if err != nil {
		return err
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if off >= sh.bytes {
		return fmt.Errorf("offset %d outside the %d-byte shard", off, sh.bytes)
	}
	b := make([]byte, 1)
	if err := sh.dev.CopyDtoH(b, sh.ptr, off); err != nil {
		return err
	}
	b[0] ^= 0x5a
	return sh.dev.CopyHtoD(sh.ptr, off, b)
}
