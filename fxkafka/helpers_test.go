package fxkafka

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

// leakOptions are the goroutines a test may leave behind on purpose: none.
// (sarama's circuit-breaker timer was one while the pool used sarama's
// AsyncProducer; the pool's own send path starts no breaker.)
var leakOptions []goleak.Option

// checkLeaks registers a goleak check that runs after every cleanup the
// test registers later (cleanups run last-in, first-out). Tests that call it
// must not run in parallel with others.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOptions...) })
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}

// startBroker starts a one-broker kfake cluster on addr ("" for any free
// port) with the given topics, closed at cleanup.
func startBroker(t testing.TB, addr string, topics ...string) *kfake.Cluster {
	t.Helper()
	if addr == "" {
		addr = freeAddr(t)
	}
	opts := []kfake.Opt{kfake.Ports(portOf(t, addr))}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(3, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// hungListener accepts connections and never answers: a broker that hangs.
type hungListener struct {
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted chan net.Addr // the remote address of each accepted connection
	wg       sync.WaitGroup
}

func startHungListener(t testing.TB) *hungListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := &hungListener{ln: ln, accepted: make(chan net.Addr, 64)}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
			select {
			case h.accepted <- c.RemoteAddr():
			default:
			}
		}
	}()
	t.Cleanup(h.close)
	return h
}

func (h *hungListener) addr() string { return h.ln.Addr().String() }

func (h *hungListener) close() {
	_ = h.ln.Close()
	h.wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		_ = c.Close()
	}
}

// storedRecord is what the broker stored.
type storedRecord struct {
	Key, Value string
	Partition  int32
	Offset     int64
}

// readBack returns every record the cluster stores for topic (see
// readRecords).
func readBack(t testing.TB, c *kfake.Cluster, topic string) []storedRecord {
	t.Helper()
	recs := readRecords(t, c, topic)
	out := make([]storedRecord, 0, len(recs))
	for _, r := range recs {
		out = append(out, storedRecord{Key: string(r.Key), Value: string(r.Value), Partition: r.Partition, Offset: r.Offset})
	}
	return out
}

// readRecords returns every record the cluster stores for topic, as a
// consumer reads it. It asks the cluster how many it holds (the sum of the
// partitions' high watermarks) and consumes exactly that many, so
// duplicates are seen and no wait is guessed.
func readRecords(t testing.TB, c *kfake.Cluster, topic string) []*kgo.Record {
	t.Helper()
	var total int64
	for _, pi := range c.PartitionInfos(topic) {
		total += pi.HighWatermark - pi.LogStartOffset
	}
	out := make([]*kgo.Record, 0, total)
	if total == 0 {
		return out
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for int64(len(out)) < total {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %d of %d records", len(out), total)
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// countValues counts how often each value was stored.
func countValues(rs []storedRecord) map[string]int {
	m := make(map[string]int, len(rs))
	for _, r := range rs {
		m[r.Value]++
	}
	return m
}

func testConfig(addrs ...string) Config {
	return Config{Brokers: addrs, ProvisionTimeout: 2 * time.Second, ProvisionBackoffMax: 200 * time.Millisecond}
}

func newTestPool(t testing.TB, cfg Config, opts ...Option) *ProducerPool {
	t.Helper()
	p, err := New(cfg, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	return p
}

func value(i int) string { return fmt.Sprintf("v%06d", i) }
