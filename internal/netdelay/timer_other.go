//go:build !linux

package netdelay

// newPreciseTimer returns nil: elsewhere the delay line uses Go timers.
func newPreciseTimer() timer { return nil }
