//go:build linux

package fxkafka

import (
	"syscall"
	"unsafe"
)

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollErr   = 0x8
	pollHup   = 0x10
	pollRdHup = 0x2000 // the peer shut its side: seen even behind unread bytes (a TLS close_notify)
)

// peekClosed asks the kernel, without waiting, whether the peer has shut
// the connection or it failed: ppoll with POLLRDHUP, which sees a broker's
// FIN even behind bytes not yet read (the close_notify alert a TLS broker
// sends before it). It runs under Control, not Read: it takes neither the
// socket's read lock (a Read waiting for an answer) nor its read deadline
// (sarama leaves an expired one on a quiet connection) into account.
func peekClosed(rc syscall.RawConn) bool {
	var closed bool
	err := rc.Control(func(fd uintptr) {
		pfd := pollFd{fd: int32(fd), events: pollRdHup}
		var zero syscall.Timespec
		n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
		closed = errno == 0 && n == 1 && pfd.revents&(pollRdHup|pollHup|pollErr) != 0
	})
	return closed && err == nil
}
