package benchkit

import (
	"sync"
	"testing"
)

// keeper is the testing.TB a client is made with when it must outlive the
// runs of one benchmark case: Go runs a benchmark function several times
// with a growing b.N and runs its cleanups after each run, so a client made
// with the case's *testing.B would be made, warmed up and closed again for
// every run, and the run that counts would measure a client just made. The
// keeper collects the client's cleanups instead and runs them in finish,
// which the parent benchmark calls when the case is over. A failure while
// the case runs goes to the case; one during finish goes to the parent,
// whose goroutine runs it.
type keeper struct {
	testing.TB // the case, while it runs

	parent testing.TB

	mu       sync.Mutex // protects following fields
	cleanups []func()
	finished bool
}

func keep(tb, parent testing.TB) *keeper { return &keeper{TB: tb, parent: parent} }

// to is the test a failure or a log line belongs to now.
func (k *keeper) to() testing.TB {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.finished {
		return k.parent
	}
	return k.TB
}

func (k *keeper) Cleanup(f func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cleanups = append(k.cleanups, f)
}

// finish runs the cleanups, last registered first.
func (k *keeper) finish() {
	k.mu.Lock()
	k.finished = true
	fs := k.cleanups
	k.cleanups = nil
	k.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func (k *keeper) Helper()                        {}
func (k *keeper) Error(args ...any)              { k.to().Error(args...) }
func (k *keeper) Errorf(format string, a ...any) { k.to().Errorf(format, a...) }
func (k *keeper) Fail()                          { k.to().Fail() }
func (k *keeper) FailNow()                       { k.to().FailNow() }
func (k *keeper) Failed() bool                   { return k.to().Failed() }
func (k *keeper) Fatal(args ...any)              { k.to().Fatal(args...) }
func (k *keeper) Fatalf(format string, a ...any) { k.to().Fatalf(format, a...) }
func (k *keeper) Log(args ...any)                { k.to().Log(args...) }
func (k *keeper) Logf(format string, a ...any)   { k.to().Logf(format, a...) }
