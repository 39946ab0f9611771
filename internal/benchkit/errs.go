package benchkit

import (
	"fmt"
	"sync"
)

// Failures counts failed messages and keeps the first error, for a
// client's promises. Its methods are safe for concurrent use; the zero value
// is ready.
type Failures struct {
	mu    sync.Mutex // protects following fields
	n     int
	first error
}

// Add counts one failed message.
func (f *Failures) Add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.first = err
	}
	f.n++
}

// Take returns an error saying how many failed of total (0: unknown), and
// resets the count; nil if none failed.
func (f *Failures) Take(total int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return nil
	}
	n, first := f.n, f.first
	f.n, f.first = 0, nil
	if total > 0 {
		return fmt.Errorf("%d of %d messages failed; first: %w", n, total, first)
	}
	return fmt.Errorf("%d messages failed; first: %w", n, first)
}
