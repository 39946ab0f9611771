package fxkafka

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// connsOf returns the tracked connections of p's producers now.
func connsOf(p *ProducerPool) []*trackedConn {
	var out []*trackedConn
	for _, pr := range p.allProducers() {
		pr.dialer.mu.Lock()
		for c := range pr.dialer.conns {
			out = append(out, c)
		}
		pr.dialer.mu.Unlock()
	}
	return out
}

// tcpPair returns a connected client/server pair of TCP connections.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// A healthy connection whose read deadline has passed (sarama sets one,
// now+Net.ReadTimeout, before reading every response, and never clears it)
// must not be taken for one the broker closed.
func TestStalePeekOnAHealthyConnectionWithAnExpiredReadDeadline(t *testing.T) {
	client, _ := tcpPair(t)
	p := newPeekConn(client)
	p.lastIO.Store(time.Now().Add(-2 * staleAfter).UnixNano())
	require.False(t, p.closedByPeer(), "healthy, no deadline")
	require.NoError(t, p.SetReadDeadline(time.Now().Add(-time.Millisecond)))
	assert.False(t, p.closedByPeer(), "healthy connection with an expired read deadline reported as closed by the peer")
}

// A TLS broker that closes an idle connection gracefully (close_notify,
// then FIN, as Java's SSLEngine does) must be found like a plain one: the
// README promises the request goes on a fresh connection.
func TestStaleATLSBrokerClosingGracefullyIsFound(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}
	var lns []*droppingListener
	var lmu sync.Mutex
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic), kfake.ListenFn(func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		dl := &droppingListener{Listener: ln, tls: srvCfg}
		lmu.Lock()
		lns = append(lns, dl)
		lmu.Unlock()
		return dl, nil
	}))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.TLS, cfg.TLSCAFile = true, pki.caFile
	p := newTestPool(t, cfg)
	_, _, err = p.SendMessage(context.Background(), msg("before"))
	require.NoError(t, err)
	before := connsOf(p)
	require.NotEmpty(t, before)
	lmu.Lock()
	listeners := slices.Clone(lns)
	lmu.Unlock()
	waitAccepted(t, before, acceptedBy(listeners))

	// The broker closes every connection gracefully, as a TLS broker does.
	lmu.Lock()
	for _, ln := range lns {
		ln.dropAll()
	}
	lmu.Unlock()
	waitClosedByPeer(t, p, before) // close_notify, then FIN

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = p.SendMessage(ctx, msg("after"))
	assert.NoError(t, err, "the request went into the connection the TLS broker closed")
	assert.Zero(t, p.Stats().FailedUnknown, "failed as outcome unknown")
}

// A connection that is no socket (a custom proxy dialer's, net.Pipe) is
// never reported closed, and the check does not block.
func TestStalePeekOnAConnectionThatIsNoSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	p := newPeekConn(a)
	p.lastIO.Store(time.Now().Add(-2 * staleAfter).UnixNano())
	assert.False(t, p.closedByPeer())
	_ = b.Close()
	assert.False(t, p.closedByPeer(), "documented: only sockets are checked")
}

// expireDeadlines does to p's connections what Net.ReadTimeout of quiet
// does: sarama's last read deadline on each has passed.
func expireDeadlines(t *testing.T, p *ProducerPool) int {
	n := 0
	for _, tc := range connsOf(p) {
		require.NoError(t, tc.peek.SetReadDeadline(time.Now().Add(-time.Millisecond)))
		n++
	}
	ageConnections(p)
	return n
}

// After a quiet spell beyond Net.ReadTimeout, the metadata a new topic
// needs and the produce request both go on healthy connections: every
// connection is dropped instead, and the sends must still succeed without
// retiring a producer.
func TestStaleExpiredDeadlinesOnEveryConnection(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic, "events2")
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	_, _, err := p.SendMessage(context.Background(), msg("warm"))
	require.NoError(t, err)
	before := connsOf(p)
	require.Positive(t, expireDeadlines(t, p))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = p.SendMessage(ctx, &sarama.ProducerMessage{Topic: "events2", Value: sarama.StringEncoder("new topic")})
	took := time.Since(start)
	require.NoError(t, err)
	assert.Zero(t, p.Stats().ProducersRetired)
	kept := map[*trackedConn]bool{}
	for _, tc := range connsOf(p) {
		kept[tc] = true
	}
	n := 0
	for _, tc := range before {
		if !kept[tc] {
			n++
		}
	}
	assert.Zero(t, n, "healthy connections dropped (of %d); the send took %v", len(before), took)
}
