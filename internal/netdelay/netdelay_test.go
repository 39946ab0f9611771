package netdelay

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// dialPair starts a delayed listener on loopback and returns a client
// connection and the server side of it, both closed at cleanup.
func dialPair(t *testing.T, d time.Duration) (client, server net.Conn) {
	t.Helper()
	ln, err := Listen("tcp", "127.0.0.1:0", d)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	server, err = ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = server.Close() })
	return client, server
}

func TestEveryReadArrivesAtLeastTheDelayAfterItWasWritten(t *testing.T) {
	const d = 20 * time.Millisecond
	client, server := dialPair(t, d)
	buf := make([]byte, 5)
	for _, msg := range []string{"first", "again"} {
		start := time.Now()
		_, err := client.Write([]byte(msg))
		require.NoError(t, err)
		_, err = io.ReadFull(server, buf)
		require.NoError(t, err)
		assert.Equal(t, msg, string(buf))
		assert.GreaterOrEqual(t, time.Since(start), d, "%q came through early", msg)
	}
}

func TestResponsesLeaveWithoutDelay(t *testing.T) {
	client, server := dialPair(t, time.Hour)
	_, err := server.Write([]byte("pong"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(client, buf) // would take an hour if writes were delayed
	require.NoError(t, err)
	assert.Equal(t, "pong", string(buf))
}

func TestTheServerReadsEverythingThenEOFWhenTheClientCloses(t *testing.T) {
	client, server := dialPair(t, time.Millisecond)
	_, err := client.Write([]byte("bye"))
	require.NoError(t, err)
	require.NoError(t, client.Close())
	got, err := io.ReadAll(server)
	require.NoError(t, err)
	assert.Equal(t, "bye", string(got))
}

func TestZeroDelayIsThePlainListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	assert.Same(t, ln, NewListener(ln, 0))
}

func TestCloseEndsAReadWaitingInTheDelayAndStopsTheReader(t *testing.T) {
	client, server := dialPair(t, time.Hour)
	_, err := client.Write([]byte("never seen"))
	require.NoError(t, err)
	read := make(chan error)
	go func() {
		_, err := server.Read(make([]byte, 16))
		read <- err
	}()
	require.NoError(t, server.Close())
	assert.ErrorIs(t, <-read, net.ErrClosed)
	assert.NoError(t, server.Close(), "Close twice is safe")
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

func TestReadDeadlinesAreRefused(t *testing.T) {
	_, server := dialPair(t, time.Millisecond)
	assert.ErrorIs(t, server.SetReadDeadline(time.Now()), ErrDeadlineUnsupported)
	assert.ErrorIs(t, server.SetDeadline(time.Now()), ErrDeadlineUnsupported)
	assert.NoError(t, server.SetWriteDeadline(time.Time{}))
}

// TestPipelinedChunksAreEachDueOneDelayAfterTheyArrived drives the delay line
// with a fake clock: a chunk that arrives 1ms after another, while the first
// is still in the delay, is due 1ms after the first, not a whole delay after
// it. A delay line that serialised requests would never deliver the second
// chunk at that time.
func TestPipelinedChunksAreEachDueOneDelayAfterTheyArrived(t *testing.T) {
	const d = 5 * time.Millisecond
	clk := newFakeClock()
	client, raw := net.Pipe()
	defer client.Close()
	server := newConn(raw, d, clk)
	defer server.Close()

	t0 := clk.t // not clk.now(): that would report a stamp
	_, err := client.Write([]byte("a"))
	require.NoError(t, err)
	<-clk.stamped // "a" arrived at t0
	clk.set(t0.Add(time.Millisecond))
	_, err = client.Write([]byte("b"))
	require.NoError(t, err)
	<-clk.stamped // "b" arrived at t0+1ms

	got := make(chan string)
	go func() {
		buf := make([]byte, 1)
		for range 2 {
			if _, err := server.Read(buf); err != nil {
				got <- err.Error()
				return
			}
			got <- string(buf)
		}
	}()
	clk.set(t0.Add(d))
	assert.Equal(t, "a", receive(t, got))
	clk.set(t0.Add(d + time.Millisecond))
	assert.Equal(t, "b", receive(t, got), "the second chunk waits for the first")
}

func receive(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("nothing delivered although the fake clock reached the chunk's due time")
		return ""
	}
}

// fakeClock is a clock the test moves. It reports every reading on stamped,
// so a test knows when the pump has stamped a chunk.
type fakeClock struct {
	stamped chan struct{}

	mu      sync.Mutex // protects following fields
	t       time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan struct{}
}

func newFakeClock() *fakeClock {
	return &fakeClock{stamped: make(chan struct{}, 16), t: time.Unix(1_000_000, 0)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stamped <- struct{}{}
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(t) {
			kept = append(kept, w)
		} else {
			close(w.ch)
		}
	}
	c.waiters = kept
}

func (c *fakeClock) newTimer() timer { return c }

func (c *fakeClock) stop() {}

func (c *fakeClock) sleepUntil(t time.Time, cancel <-chan struct{}) bool {
	c.mu.Lock()
	if !t.After(c.t) {
		c.mu.Unlock()
		return true
	}
	w := waiter{at: t, ch: make(chan struct{})}
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	select {
	case <-w.ch:
		return true
	case <-cancel:
		return false
	}
}
