// Package backoff is the capped exponential delay the host waits between
// attempts: plugin restarts, deliveries to a failing sink, reloads of the
// VRAM backend.
package backoff

import "time"

// Backoff doubles from Min to Max; the zero value with Min and Max set is
// ready to use.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Next returns the delay before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		b.next = b.Min
	}
	d := b.next
	b.next = min(b.next*2, b.Max)
	return d
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.next = 0 }
