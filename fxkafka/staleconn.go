package fxkafka

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// errStaleConnection is a write the dialer refused before sending anything:
// the broker closed the connection while it was idle (it restarted, or
// dropped idle connections). Nothing of the request reached a broker, so the
// pool sends it again on a fresh connection; without this check the
// request would be written into the dead connection, the broker's reset
// would come back, and the pool could only say "may have been written".
var errStaleConnection = errors.New("fxkafka: the broker closed this connection while it was idle; nothing was sent")

// staleAfter is how long a connection must have been quiet before a write
// checks that the broker has not closed it. A connection in use learns of a
// close from its next answer; the check costs a system call.
const staleAfter = 200 * time.Millisecond

// peekConn is the TCP connection under TLS (or alone). It notes when it
// was last used, and can tell between requests whether the broker has
// closed it.
type peekConn struct {
	net.Conn
	lastIO atomic.Int64 // unix nanoseconds of the last Read or Write
}

func newPeekConn(c net.Conn) *peekConn {
	p := &peekConn{Conn: c}
	p.lastIO.Store(time.Now().UnixNano())
	return p
}

func (p *peekConn) Read(b []byte) (int, error) {
	n, err := p.Conn.Read(b)
	p.lastIO.Store(time.Now().UnixNano())
	return n, err
}

func (p *peekConn) Write(b []byte) (int, error) {
	n, err := p.Conn.Write(b)
	p.lastIO.Store(time.Now().UnixNano())
	return n, err
}

// closedByPeer reports whether the broker has closed the connection. It
// looks only when the connection has been quiet for staleAfter, and only
// where the system can ask about a socket without blocking, reading or
// minding a Read that waits for an answer (peekClosed); elsewhere, and for
// connections that are not sockets (a custom proxy dialer's), it reports
// false.
func (p *peekConn) closedByPeer() bool {
	if time.Since(time.Unix(0, p.lastIO.Load())) < staleAfter {
		return false
	}
	sc, ok := p.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	return peekClosed(rc)
}
