//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package fxkafka

import (
	"errors"
	"syscall"
)

// peekClosed peeks at one byte of the socket without waiting and without
// taking it: end of stream or a reset means the peer closed the
// connection; a byte waiting, or none yet, means it is open (so a TLS
// broker's close_notify, unread, hides the close behind it). It runs under
// Control, not Read: it takes neither the socket's read lock nor its read
// deadline into account.
func peekClosed(rc syscall.RawConn) bool {
	var closed bool
	var b [1]byte
	err := rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n == 0 && err == nil:
			closed = true // end of stream
		case err == nil, errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
		default:
			closed = true // reset, or another error the next write would meet
		}
	})
	return closed && err == nil
}
