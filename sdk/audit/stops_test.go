package audit

import "testing"

// The eight-byte scan stops exactly where the byte scan would.
func TestStops8Exhaustive(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			if got := stops8(load8(string(b), 0)); got != strStop[c] {
				t.Fatalf("byte %#x at %d: %v", c, pos, got)
			}
		}
	}
}
