package fxkafka

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// errAborted is returned by an aborted dialer: the pool is abandoning the
// producer that owns it (a provisioning attempt that timed out or was
// cancelled, or a Close whose context ended).
var errAborted = errors.New("fxkafka: connection aborted by the pool")

// dialer is the sarama Net.Proxy.Dialer of one producer. sarama's blocking
// calls take no context, so the pool keeps a handle on every connection it
// opened: abort closes them all and refuses new ones, which makes any sarama
// call blocked on them (a broker that accepts and never answers) return at
// once.
type dialer struct {
	net     net.Dialer
	ctx     context.Context // cancelled by abort, so a dial under way stops too
	cancel  context.CancelFunc
	aborted atomic.Bool // set under mu, read without it
	ready   atomic.Bool // set once provisioning succeeded
	mu      sync.Mutex  // protects conns
	conns   map[*trackedConn]struct{}
}

func newDialer(timeout, keepAlive time.Duration) *dialer {
	ctx, cancel := context.WithCancel(context.Background())
	return &dialer{
		net:    net.Dialer{Timeout: timeout, KeepAlive: keepAlive},
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[*trackedConn]struct{}),
	}
}

// Dial implements golang.org/x/net/proxy.Dialer.
func (d *dialer) Dial(network, addr string) (net.Conn, error) {
	c, err := d.net.DialContext(d.ctx, network, addr)
	if err != nil {
		if d.aborted.Load() {
			return nil, errAborted
		}
		return nil, err
	}
	tc := &trackedConn{Conn: c, d: d}
	d.mu.Lock()
	if d.aborted.Load() {
		d.mu.Unlock()
		_ = c.Close()
		return nil, errAborted
	}
	d.conns[tc] = struct{}{}
	d.mu.Unlock()
	return tc, nil
}

// abort closes every open connection and makes later dials fail. Safe to
// call more than once and concurrently.
func (d *dialer) abort() {
	d.mu.Lock()
	d.aborted.Store(true)
	conns := d.conns
	d.conns = make(map[*trackedConn]struct{})
	d.mu.Unlock()
	d.cancel()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

// trackedConn removes itself from its dialer when closed, so a long-lived
// producer that reconnects does not grow the set.
type trackedConn struct {
	net.Conn
	d    *dialer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.d.mu.Lock()
		delete(c.d.conns, c)
		c.d.mu.Unlock()
	})
	return c.Conn.Close()
}
