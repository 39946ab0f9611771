package fxkafka

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// droppingListener records the connections a broker accepts, so a test can
// close them as a broker does when it restarts or drops idle connections.
// With tls set it serves TLS, and its Close sends close_notify first.
type droppingListener struct {
	net.Listener
	tls   *tls.Config
	mu    sync.Mutex
	conns []net.Conn
}

func (l *droppingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.tls != nil {
		c = tls.Server(c, l.tls)
	}
	l.mu.Lock()
	l.conns = append(l.conns, c)
	l.mu.Unlock()
	return c, nil
}

func (l *droppingListener) dropAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

// waitAccepted waits until the broker side has accepted each of conns
// (accepted lists the connections it has), so that closing every accepted
// connection closes each of them. sarama's client opens a partition
// leader's connection in the background when the pool asks it for the
// leader, and the pool, writing its produce requests on connections of its
// own, leaves that one idle: dialled moments before a test drops the
// broker's connections, it may not be accepted yet, and the drop misses it.
func waitAccepted(t *testing.T, conns []*trackedConn, accepted func() []net.Conn) {
	t.Helper()
	waitFor(t, 5*time.Second, "the broker to accept the pool's connections", func() bool {
		at := map[string]bool{}
		for _, c := range accepted() {
			at[c.RemoteAddr().String()] = true
		}
		for _, c := range conns {
			if !at[c.raw.LocalAddr().String()] {
				return false
			}
		}
		return true
	})
}

// acceptedBy is the connections lns have accepted.
func acceptedBy(lns []*droppingListener) func() []net.Conn {
	return func() []net.Conn {
		var out []net.Conn
		for _, ln := range lns {
			ln.mu.Lock()
			out = append(out, ln.conns...)
			ln.mu.Unlock()
		}
		return out
	}
}

// waitClosedByPeer waits until each of conns, p's, sees that the broker
// closed it. The connections are aged on every look: a background request
// (a metadata refresh) that meets the closed socket counts as I/O and makes
// it look fresh again, and a fresh connection is never checked.
func waitClosedByPeer(t *testing.T, p *ProducerPool, conns []*trackedConn) {
	t.Helper()
	waitFor(t, 5*time.Second, "the close to reach the pool's side", func() bool {
		ageConnections(p)
		for _, c := range conns {
			if !c.peek.closedByPeer() {
				return false
			}
		}
		return true
	})
}

// ageConnections makes every connection of p's producers look idle for
// longer than staleAfter, as after a quiet spell.
func ageConnections(p *ProducerPool) {
	past := time.Now().Add(-2 * staleAfter).UnixNano()
	for _, pr := range p.allProducers() {
		pr.dialer.mu.Lock()
		for c := range pr.dialer.conns {
			c.peek.lastIO.Store(past)
		}
		pr.dialer.mu.Unlock()
	}
}

func TestASendAfterTheBrokerDroppedAnIdleConnectionGoesOnAFreshOne(t *testing.T) {
	// With no retries too: the write refused on the stale connection is
	// not an attempt.
	for _, retries := range []int{3, 0} {
		t.Run(fmt.Sprintf("Retries=%d", retries), func(t *testing.T) {
			sendAfterTheBrokerDroppedIdleConnections(t, retries)
		})
	}
}

func sendAfterTheBrokerDroppedIdleConnections(t *testing.T, retries int) {
	checkLeaks(t)
	var lns []*droppingListener
	c, err := kfake.NewCluster(kfake.SeedTopics(3, topic), kfake.ListenFn(func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		dl := &droppingListener{Listener: ln}
		lns = append(lns, dl)
		return dl, nil
	}))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	p := newTestPool(t, testConfig(c.ListenAddrs()...), WithSaramaConfig(func(sc *sarama.Config) { sc.Producer.Retry.Max = retries }))
	_, _, err = p.SendMessage(context.Background(), msg("before"))
	require.NoError(t, err)

	// The broker drops the pool's connections while they are idle, as on
	// a restart: the pool learns of it only when it uses them.
	before := connsOf(p)
	require.NotEmpty(t, before)
	waitAccepted(t, before, acceptedBy(lns))
	for _, ln := range lns {
		ln.dropAll()
	}
	waitClosedByPeer(t, p, before)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err = p.SendMessage(ctx, msg("after"))
	require.NoError(t, err, "the dead connection was found before the request went into it")
	require.Zero(t, p.Stats().FailedUnknown)
	require.NoError(t, p.Close(context.Background()))
	require.Equal(t, 1, countValues(readBack(t, c, topic))["after"])
}

func TestTheStaleCheckNeverWaitsForAnAnswerStillDue(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	_, _, err := p.SendMessage(context.Background(), msg("first"))
	require.NoError(t, err)

	// A produce request the broker holds: its connection's reader waits
	// for the answer, and the connection has been quiet for staleAfter.
	h := holdRequests(t, c, kmsg.Produce)
	sent := make(chan error, 1)
	go func() {
		_, _, err := p.SendMessage(context.Background(), msg("held"))
		sent <- err
	}()
	<-h.seen
	conns := connsOf(p)
	ageConnections(p)

	// A write on any connection checks it: the check must not wait for a
	// reader (the answer comes only after release).
	checked := make(chan bool, len(conns))
	for _, c := range conns {
		go func() { checked <- c.peek.closedByPeer() }()
	}
	for range conns {
		select {
		case closed := <-checked:
			require.False(t, closed)
		case <-time.After(5 * time.Second):
			h.release()
			t.Fatal("the check waited for the answer still due")
		}
	}
	h.release()
	require.NoError(t, <-sent)
}
