package netdelay

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

// fdTimer waits on a timerfd through the runtime's poller: the kernel wakes
// the poller when the timer expires, to within its timer slack (about 40 µs
// here, against up to a millisecond for a Go timer in an idle process), and
// the waiting goroutine holds no thread meanwhile.
type fdTimer struct {
	f   *os.File
	buf [8]byte // the expiry count a read returns
}

// itimerspec is the kernel's struct itimerspec.
type itimerspec struct{ interval, value syscall.Timespec }

const (
	clockMonotonic = 1
	tfdNonblock    = syscall.O_NONBLOCK // TFD_NONBLOCK
	tfdCloexec     = syscall.O_CLOEXEC  // TFD_CLOEXEC
)

// newPreciseTimer returns an fdTimer, or nil if the system refuses one.
func newPreciseTimer() timer {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		return nil
	}
	return &fdTimer{f: os.NewFile(fd, "netdelay-timer")} // non-blocking: os polls it
}

func (t *fdTimer) sleepUntil(at time.Time, cancel <-chan struct{}) bool {
	select {
	case <-cancel:
		return false
	default:
	}
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	spec := itimerspec{value: syscall.NsecToTimespec(int64(d))}
	rc, err := t.f.SyscallConn()
	if err != nil {
		return false
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	}); err != nil {
		return false // stopped
	}
	if errno != 0 {
		// settime failing (never seen) costs precision, not correctness.
		return goTimer{}.sleepUntil(at, cancel)
	}
	_, err = t.f.Read(t.buf[:])
	return err == nil
}

// stop closes the timerfd, which ends a read waiting on it.
func (t *fdTimer) stop() { _ = t.f.Close() }
