package fxkafka

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// foreignListener is a server of another protocol on a port the pool was
// told is a broker's: each accepted connection is handed to serve, which
// owns it until it returns. close stops accepting, closes every connection
// and waits for the goroutines.
type foreignListener struct {
	ln    net.Listener
	serve func(net.Conn)
	wg    sync.WaitGroup
	mu    sync.Mutex // protects conns
	conns []net.Conn
}

func startForeignListener(t *testing.T, serve func(net.Conn)) *foreignListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &foreignListener{ln: ln, serve: serve}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *foreignListener) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.serve(c)
		}()
	}
}

func (f *foreignListener) addr() string { return f.ln.Addr().String() }

func (f *foreignListener) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// sshServer greets first, as SSH servers do, then reads until the client
// goes away.
func sshServer(c net.Conn) {
	_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
	_, _ = io.Copy(io.Discard, c)
}

// redisServer answers whatever it is sent with an error line, as Redis does
// to a request it cannot parse, then reads until the client goes away.
func redisServer(c net.Conn) {
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		return
	}
	_, _ = io.WriteString(c, "-ERR unknown command '\\x00\\x00', with args beginning with: \r\n")
	_, _ = io.Copy(io.Discard, c)
}

// allocatedDuring returns the bytes the process allocated while f ran.
func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestAPeerSpeakingAnotherProtocolIsRefusedWithoutAllocatingItsLength(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name  string
		serve func(net.Conn)
	}{
		{"an SSH server", sshServer},
		{"a Redis server", redisServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startForeignListener(t, tt.serve)
			p := newTestPool(t, testConfig(f.addr()))

			var err error
			allocated := allocatedDuring(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, _, err = p.SendMessage(ctx, msg("to the wrong port"))
			})
			t.Logf("allocated %d bytes (%.1f MiB) during the attempt", allocated, float64(allocated)/(1<<20))
			require.ErrorIs(t, err, ErrUnavailable)
			assert.ErrorIs(t, err, errNotKafka, "the cause says the peer is no broker: %v", err)
			assert.Less(t, allocated, uint64(64<<20), "the peer's first four bytes were not taken as a length to allocate")

			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := p.Close(ctx); err != nil {
				assert.ErrorIs(t, err, ctx.Err(), "Close returns nil or its context's error")
			}
		})
	}
}

func TestAPeerSpeakingAnotherProtocolInsideTLSIsRefusedToo(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}
	// An HTTPS server: the dialer's TLS handshake succeeds, and the answer
	// inside it is HTTP.
	f := startForeignListener(t, func(c net.Conn) {
		tc := tls.Server(c, serverTLS)
		if _, err := tc.Read(make([]byte, 512)); err != nil {
			return
		}
		_, _ = io.WriteString(tc, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		_, _ = io.Copy(io.Discard, tc)
	})
	cfg := testConfig(f.addr())
	cfg.TLS, cfg.TLSCAFile = true, pki.caFile
	p := newTestPool(t, cfg)

	var err error
	allocated := allocatedDuring(func() {
		_, _, err = p.SendMessage(context.Background(), msg("to a web server"))
	})
	require.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, errNotKafka)
	assert.ErrorContains(t, err, `"HTTP"`, "the error shows what the peer sent")
	assert.Less(t, allocated, uint64(64<<20))
}
