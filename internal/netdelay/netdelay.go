// Package netdelay is a delay line for an in-process server's connections:
// every byte the server reads reaches it a fixed delay after the client wrote
// it, so each request pays one network round trip before the server sees it.
// fxkafka's tests and benchmarks put it under kfake (through kfake.ListenFn)
// to measure clients at 1 or 5 ms round trips on loopback, without cgo.
//
// The whole round trip is put on the way in; responses leave at once. A
// client's pipelined requests overlap as they do on a real network: each
// connection has a goroutine that reads from the socket as soon as bytes
// arrive and stamps them, and the server's Read hands each chunk over when
// its own stamp plus the delay has passed, never a delay after the chunk
// before it. So n requests written together are all answered about one
// delay after they were written, not n delays. Bandwidth, connection setup
// and the server's processing time are not modelled.
//
// On Linux a chunk is handed over typically tens of µs after its due time
// (a timerfd the runtime's poller waits on: fdTimer); elsewhere Go's timers
// wait, which on Linux wake an otherwise idle process up to a millisecond
// late (goTimer, BenchmarkTimerLateness).
package netdelay

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"time"
)

// Listen announces on the local network address, like [net.Listen], and
// delays what its connections read by d. With d <= 0 it is net.Listen.
func Listen(network, address string, d time.Duration) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return NewListener(ln, d), nil
}

// ListenFunc returns [Listen] with the delay bound: the function
// kfake.ListenFn takes.
func ListenFunc(d time.Duration) func(network, address string) (net.Listener, error) {
	return func(network, address string) (net.Listener, error) { return Listen(network, address, d) }
}

// NewListener wraps ln so that every connection it accepts delays what it
// reads by d. With d <= 0 it returns ln itself.
func NewListener(ln net.Listener, d time.Duration) net.Listener {
	if d <= 0 {
		return ln
	}
	return &listener{Listener: ln, delay: d, clk: realClock{}}
}

type listener struct {
	net.Listener
	delay time.Duration
	clk   clock
}

// Accept waits for the next connection and returns it behind the delay line.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newConn(c, l.delay, l.clk), nil
}

// ErrDeadlineUnsupported is returned by SetDeadline and SetReadDeadline on a
// delayed connection: the socket is read ahead of the server, so a deadline
// on it would not mean what the caller asked. Write deadlines work.
var ErrDeadlineUnsupported = errors.New("netdelay: read deadlines are not supported on a delayed connection")

// queued is how many chunks a connection holds in its delay before its
// reading goroutine waits (and TCP pushes back on the client): with reads of
// at most readSize it bounds a connection's queue to 64 MiB, far more than
// any Kafka client keeps in flight, so the bound never shapes a measurement.
const (
	queued   = 1024
	readSize = 64 << 10
)

// conn is a server-side connection behind the delay line. Its pump
// goroutine reads the socket into chunks, each stamped with when it is due;
// Read hands them out in order once due. Close stops the pump and waits for it.
type conn struct {
	net.Conn
	delay  time.Duration
	clk    clock
	tm     timer         // Read's, stopped by Close
	chunks chan chunk    // from pump to Read, in order
	stop   chan struct{} // closed by Close
	pumped chan struct{} // closed when pump returns

	closeOnce sync.Once
	closeErr  error

	mu  sync.Mutex // serialises Read; protects following fields
	cur []byte     // what is left of the chunk being read
	err error      // the read error that ended the stream, once it is due
}

type chunk struct {
	due  time.Time
	data []byte
	err  error
}

func newConn(c net.Conn, d time.Duration, clk clock) *conn {
	dc := &conn{
		Conn:   c,
		delay:  d,
		clk:    clk,
		tm:     clk.newTimer(),
		chunks: make(chan chunk, queued),
		stop:   make(chan struct{}),
		pumped: make(chan struct{}),
	}
	go dc.pump()
	return dc
}

// pump reads the socket as fast as bytes arrive, so that a chunk's stamp is
// when it arrived, whatever the server is doing. It ends with the socket's
// first read error (passed on, in turn, to Read) or with Close.
func (c *conn) pump() {
	defer close(c.pumped)
	buf := make([]byte, readSize)
	for {
		n, err := c.Conn.Read(buf)
		ch := chunk{due: c.clk.now().Add(c.delay), err: err}
		if n > 0 {
			ch.data = bytes.Clone(buf[:n])
		}
		select {
		case c.chunks <- ch:
		case <-c.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// Read returns the next bytes once they are due: the delay after they
// arrived. It returns [net.ErrClosed] once the connection is closed, and the
// socket's error (io.EOF when the client closed) after the last bytes.
func (c *conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.cur) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		var ch chunk
		select {
		case ch = <-c.chunks:
		case <-c.stop:
			return 0, net.ErrClosed
		}
		if !c.tm.sleepUntil(ch.due, c.stop) {
			return 0, net.ErrClosed
		}
		c.cur, c.err = ch.data, ch.err
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

// Close closes the socket and waits for the pump to stop; a Read waiting
// for a chunk's delay returns at once. Close twice is safe.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		c.tm.stop()
		c.closeErr = c.Conn.Close()
		<-c.pumped
	})
	return c.closeErr
}

// SetDeadline sets the write deadline only, and returns
// [ErrDeadlineUnsupported] for the read half.
func (c *conn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return ErrDeadlineUnsupported
}

// SetReadDeadline returns [ErrDeadlineUnsupported].
func (c *conn) SetReadDeadline(time.Time) error { return ErrDeadlineUnsupported }

// clock is time as the delay line sees it; tests replace it.
type clock interface {
	now() time.Time
	// newTimer returns the timer of one connection's Reads.
	newTimer() timer
}

// timer is how Read waits for a chunk to be due.
type timer interface {
	// sleepUntil waits until t; it returns false if cancel is already
	// closed or the timer is stopped (a timer may not notice cancel closing
	// during a wait: stop it too).
	sleepUntil(t time.Time, cancel <-chan struct{}) bool
	// stop ends a wait and frees the timer; it may run during a wait.
	stop()
}

type realClock struct{}

func (realClock) now() time.Time { return time.Now() }

// newTimer returns a precise timer where the system has one (Linux: see
// fdTimer), else a Go timer.
func (realClock) newTimer() timer {
	if t := newPreciseTimer(); t != nil {
		return t
	}
	return goTimer{}
}

// goTimer waits with the Go runtime's timers. An idle Go process wakes for
// them at its poller's granularity, a whole millisecond on Linux: a 300 µs
// wait took about 1.1 ms here, a 1.3 ms one 2.2 ms (BenchmarkTimerLateness),
// which would add up to a millisecond to a delay the line promises.
type goTimer struct{}

func (goTimer) sleepUntil(t time.Time, cancel <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-cancel:
		return false
	}
}

func (goTimer) stop() {}
