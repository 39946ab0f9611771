package fxkafka

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// errAborted is returned by an aborted dialer: the pool is abandoning the
// producer that owns it (a provisioning attempt that timed out or was
// cancelled, or a Close whose context ended).
var errAborted = errors.New("fxkafka: connection aborted by the pool")

// errNotKafka is the cause of a connection the pool closed because the
// peer's answer is not framed as a Kafka response: the address is most
// likely another service's (SSH, Redis, HTTP, a TLS port dialled without
// TLS).
var errNotKafka = errors.New("the peer does not speak Kafka's protocol (is this a Kafka broker's address, and is TLS set as the broker expects?)")

// Limits on the length a response frame may announce. sarama allocates
// that length before reading the body, and in [sarama.Broker.Open] (the
// ApiVersions answer, the first a connection gets) it checks nothing: the
// first four bytes of an SSH banner ("SSH-") read as 1.3 GiB, a Redis error
// line ("-ERR") as 0.7 GiB.
const (
	// maxAPIVersionsResponse bounds the answer to the ApiVersions request
	// sarama sends first on each connection. It lists the broker's APIs, 7
	// bytes each, and its features: kfake's is 790 bytes, a Kafka 4
	// broker's under 1 KiB. 1 MiB leaves room for any broker to come and
	// still refuses a peer of another protocol before it costs more than
	// that per connection: a text protocol's first byte alone (0x20 or
	// more) makes a length of at least 512 MiB, a TLS alert's 352 MiB.
	maxAPIVersionsResponse = 1 << 20

	// minResponse is the shortest frame a response can be: its correlation
	// id. sarama subtracts 4 from the length in an unsigned type, so a
	// shorter one would ask it for 4 GiB.
	minResponse = 4

	// apiKeyAPIVersions is the Kafka protocol's key of ApiVersions.
	apiKeyAPIVersions = 18
)

// dialer is the sarama Net.Proxy.Dialer of one producer. sarama's blocking
// calls take no context, so the pool keeps a handle on every connection it
// opened: abort closes them all and refuses new ones, which makes any sarama
// call blocked on them (a broker that accepts and never answers) return at
// once.
//
// The dialer also makes the TLS handshake (sarama's Net.TLS.Enable stays
// false), so that each connection's wrapper sees Kafka's framing in plain
// text and can refuse an answer no broker would send before sarama
// allocates its announced length.
type dialer struct {
	net net.Dialer
	tls *tls.Config // nil: plain TCP; cloned for each connection

	// maxResponse bounds every other response: as long as sarama itself
	// accepts ([sarama.MaxResponseSize], 100 MiB by default, read when the
	// dialer is made), so the pool refuses nothing sarama would decode,
	// such as the metadata of a cluster with a million partitions. sarama
	// checks that limit only after the first answer; the dialer checks
	// every frame.
	maxResponse uint32

	ctx     context.Context // cancelled by abort, so a dial or handshake under way stops too
	cancel  context.CancelFunc
	aborted atomic.Bool // set under mu, read without it
	ready   atomic.Bool // set once provisioning succeeded
	mu      sync.Mutex  // protects conns
	conns   map[*trackedConn]struct{}
}

// newDialer returns a dialer whose dials and TLS handshakes each take at
// most timeout. tlsConf nil means plain TCP; otherwise it is cloned for each
// connection, with ServerName set to the broker's host when it is empty.
func newDialer(timeout, keepAlive time.Duration, tlsConf *tls.Config) *dialer {
	ctx, cancel := context.WithCancel(context.Background())
	return &dialer{
		net:         net.Dialer{Timeout: timeout, KeepAlive: keepAlive},
		tls:         tlsConf,
		maxResponse: uint32(max(sarama.MaxResponseSize, maxAPIVersionsResponse)),
		ctx:         ctx,
		cancel:      cancel,
		conns:       make(map[*trackedConn]struct{}),
	}
}

// Dial implements golang.org/x/net/proxy.Dialer. It connects, makes the
// TLS handshake if the dialer has a TLS config, and returns a connection the
// dialer tracks.
func (d *dialer) Dial(network, addr string) (net.Conn, error) {
	ctx := d.ctx
	if d.net.Timeout > 0 {
		// One bound for the dial and the handshake, as tls.Dialer does.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.net.Timeout)
		defer cancel()
	}
	raw, err := d.net.DialContext(ctx, network, addr)
	if err != nil {
		if d.aborted.Load() {
			return nil, errAborted
		}
		return nil, err
	}
	peek := newPeekConn(raw)
	var conn net.Conn = peek
	if d.tls != nil {
		tc := tls.Client(peek, d.tlsConfigFor(addr))
		// HandshakeContext closes raw when ctx ends, so a peer that
		// accepts and never answers holds the dial only until abort or
		// the timeout.
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			if d.aborted.Load() {
				return nil, errAborted
			}
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	c := &trackedConn{Conn: conn, raw: raw, peek: peek, d: d, addr: addr}
	c.firstRequest.Store(-1)
	c.in.check = c.checkFrame
	d.mu.Lock()
	if d.aborted.Load() {
		d.mu.Unlock()
		_ = raw.Close()
		return nil, errAborted
	}
	d.conns[c] = struct{}{}
	d.mu.Unlock()
	return c, nil
}

// tlsConfigFor returns the TLS config of one connection to addr. As sarama
// does (validServerNameTLS), an empty ServerName becomes the host of addr.
func (d *dialer) tlsConfigFor(addr string) *tls.Config {
	c := d.tls.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	return c
}

// abort closes every open connection and makes later dials fail. Safe to
// call more than once and concurrently. It closes the TCP connection under
// TLS directly: a TLS close would first write a close_notify alert, which
// blocks for up to 5s on a peer that stopped reading.
func (d *dialer) abort() {
	d.mu.Lock()
	d.aborted.Store(true)
	conns := d.conns
	d.conns = make(map[*trackedConn]struct{})
	d.mu.Unlock()
	d.cancel()
	for c := range conns {
		_ = c.raw.Close()
	}
}

// trackedConn is a connection of the dialer's. It removes itself from its
// dialer when closed, so a long-lived producer that reconnects does not grow
// the set, and it checks the framing of what the broker sends.
type trackedConn struct {
	net.Conn           // the TLS connection, or raw
	raw      net.Conn  // the TCP connection
	peek     *peekConn // raw, able to tell whether the broker closed it
	d        *dialer
	addr     string
	once     sync.Once

	// firstRequest is the API key of the first request written, -1 until
	// known: it sets the limit on the first response.
	firstRequest atomic.Int32
	wmu          sync.Mutex // protects reqHead, reqHeadN
	reqHead      [6]byte    // the first request's length and API key
	reqHeadN     int

	rmu     sync.Mutex // protects in, readErr
	in      frameTracker
	readErr error // set when a frame was refused; every later Read returns it
}

// Read reads from the broker and checks each response frame's length
// before sarama sees it. A length no Kafka response can have fails the read
// with an error wrapping errNotKafka and closes the connection.
func (c *trackedConn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	refused := c.readErr
	c.rmu.Unlock()
	if refused != nil {
		return 0, refused
	}
	n, err := c.Conn.Read(b)
	c.rmu.Lock()
	ferr := c.in.scan(b[:n])
	if ferr != nil {
		c.readErr = ferr
	}
	c.rmu.Unlock()
	if ferr != nil {
		c.closeRaw()
		return 0, ferr
	}
	return n, err
}

// checkFrame returns an error for the frame-th response frame (counting
// from 0) if its announced length is one no Kafka response has.
func (c *trackedConn) checkFrame(frame int, length uint32, head [4]byte) error {
	limit, of := c.d.maxResponse, "Kafka response"
	if frame == 0 && c.firstRequest.Load() == apiKeyAPIVersions {
		limit, of = maxAPIVersionsResponse, "Kafka ApiVersions response"
	}
	switch {
	case length < minResponse:
		return &frameError{fmt.Sprintf("refused the answer of %s: its frame length %q (%d bytes) is shorter than any %s: %v",
			c.addr, head[:], length, of, errNotKafka)}
	case length > limit:
		return &frameError{fmt.Sprintf("refused the answer of %s: its frame length %q (%d bytes) is beyond the %d bytes of any %s: %v",
			c.addr, head[:], length, limit, of, errNotKafka)}
	}
	return nil
}

// Write notes the API key of the first request, then writes b, unless
// the broker closed the connection while it was idle: then it writes
// nothing and returns errStaleConnection.
func (c *trackedConn) Write(b []byte) (int, error) {
	if c.peek.closedByPeer() {
		return 0, errStaleConnection
	}
	if c.firstRequest.Load() < 0 {
		c.wmu.Lock()
		if c.reqHeadN < len(c.reqHead) {
			c.reqHeadN += copy(c.reqHead[c.reqHeadN:], b)
			if c.reqHeadN == len(c.reqHead) {
				c.firstRequest.Store(int32(binary.BigEndian.Uint16(c.reqHead[4:])))
			}
		}
		c.wmu.Unlock()
	}
	return c.Conn.Write(b)
}

// Close closes the connection (for TLS, with a close_notify alert) and
// removes it from its dialer.
func (c *trackedConn) Close() error {
	c.untrack()
	return c.Conn.Close()
}

// closeRaw closes a connection to a peer that is no broker: no
// close_notify, which could wait on a peer that does not read.
func (c *trackedConn) closeRaw() {
	c.untrack()
	_ = c.raw.Close()
}

func (c *trackedConn) untrack() {
	c.once.Do(func() {
		c.d.mu.Lock()
		delete(c.d.conns, c)
		c.d.mu.Unlock()
	})
}

// frameError is why a connection was refused. It is a net.Error that is not
// a timeout, which sarama takes as a broken connection: it closes it at once
// instead of retrying on it.
type frameError struct{ msg string }

func (e *frameError) Error() string   { return e.msg }
func (e *frameError) Unwrap() error   { return errNotKafka }
func (e *frameError) Timeout() bool   { return false }
func (e *frameError) Temporary() bool { return false }

var _ net.Error = (*frameError)(nil)

// frameTracker follows a stream of Kafka frames (a 4-byte big-endian length,
// then that many bytes) as it is read, in pieces of any size: a length may
// span reads, and a read may end one frame and begin others.
type frameTracker struct {
	// check is called with each frame's index, length, and its four bytes
	// as read, once the length is complete; an error stops the scan.
	check func(frame int, length uint32, head [4]byte) error

	head   [4]byte
	headN  int    // bytes of head read
	body   uint32 // bytes of the current frame's body still to come
	frames int    // frames whose length was read
}

// scan follows b, the next bytes of the stream, calling check for each
// length it completes. It returns the first error check returns.
func (f *frameTracker) scan(b []byte) error {
	for len(b) > 0 {
		if f.body > 0 {
			k := min(uint64(f.body), uint64(len(b)))
			f.body -= uint32(k)
			b = b[k:]
			continue
		}
		k := copy(f.head[f.headN:], b)
		f.headN += k
		b = b[k:]
		if f.headN < len(f.head) {
			return nil
		}
		length := binary.BigEndian.Uint32(f.head[:])
		if err := f.check(f.frames, length, f.head); err != nil {
			return err
		}
		f.frames++
		f.headN = 0
		f.body = length
	}
	return nil
}
