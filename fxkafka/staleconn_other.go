//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package fxkafka

import "syscall"

// peekClosed reports false: this system has no portable way to peek at a
// socket without blocking, so a request may go into a connection the broker
// closed while it was idle (and then fails as "may have been written").
func peekClosed(syscall.RawConn) bool { return false }
