// Package fxkafkatest is a test kit for services that use fxkafka: a real
// Kafka-protocol broker (kfake, from franz-go) running in the test's process
// on loopback, that a test can take down and bring back on the same address,
// a read-back helper that shows what a topic holds, and a collector of
// Produce's outcomes.
//
//	func TestPublish(t *testing.T) {
//		b := fxkafkatest.NewBroker(t, "orders")
//		var h *Handler
//		app := fxtest.New(t, fxkafka.Module, fx.Replace(b.Config()), fx.Provide(NewHandler), fx.Populate(&h))
//		app.RequireStart()
//		require.NoError(t, h.Publish(ctx, "order-1"))
//		app.RequireStop()
//		recs := b.WaitForRecords("orders", 1, 10*time.Second)
//		assert.Equal(t, "order-1", string(recs[0].Value))
//	}
//
// [NewCluster] takes options for the cluster's shape and its network:
// [WithTopics], [WithBrokers], [WithPartitions], and [WithLatency], a delay
// line on every connection so that each request pays a round trip, to test
// deadlines and throughput under latency without cgo or a real cluster:
//
//	b := fxkafkatest.NewCluster(t, fxkafkatest.WithTopics("orders"), fxkafkatest.WithBrokers(3), fxkafkatest.WithLatency(5*time.Millisecond))
//
// [Promises] is for code that produces asynchronously
// ([fxkafka.ProducerPool.Produce]): it hands out promises that record every
// outcome, fails the test if one runs twice, and waits for the outcomes
// without sleeping:
//
//	promises := fxkafkatest.NewPromises(t)
//	pool.Produce(ctx, msg, promises.Promise())
//	outcomes := promises.WaitForAll(10 * time.Second)
//
// It is for tests only: kfake is a protocol peer, not a Kafka performance
// model, and this package is the only part of fxkafka that imports it.
package fxkafkatest

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/internal/netdelay"
)

// Partitions is the number of partitions of each topic NewBroker creates, and
// NewCluster's default.
const Partitions = 3

// Broker is an in-process Kafka cluster for tests, of one broker unless
// [WithBrokers] asks for more. Its methods are safe for concurrent use. It is
// closed by the test's cleanup.
type Broker struct {
	t     testing.TB
	addrs []string
	ports []int
	opts  options
	dir   string // kfake's data directory: what was written survives Down and Up

	mu      sync.Mutex // protects cluster
	cluster *kfake.Cluster
}

// NewBroker starts a one-broker cluster on a free loopback port with the
// given topics (Partitions partitions each), and registers its Close with
// t.Cleanup. Other topics are created on first use. It is
// NewCluster(t, WithTopics(topics...)).
func NewBroker(t testing.TB, topics ...string) *Broker {
	t.Helper()
	return NewCluster(t, WithTopics(topics...))
}

// NewCluster starts a cluster on free loopback ports, shaped by opts: by
// default one broker, no topic created up front, Partitions partitions for
// every topic, and no latency. It registers its Close with t.Cleanup, and
// fails the test if an option is invalid or the cluster cannot start.
//
//	b := fxkafkatest.NewCluster(t,
//		fxkafkatest.WithTopics("orders"),
//		fxkafkatest.WithBrokers(3),
//		fxkafkatest.WithPartitions(6),
//		fxkafkatest.WithLatency(5*time.Millisecond),
//	)
func NewCluster(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	o := options{brokers: 1, partitions: Partitions}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := o.validate(); err != nil {
		t.Fatalf("fxkafkatest: NewCluster: %v", err)
	}
	b := &Broker{t: t, opts: o, dir: t.TempDir()}
	for range o.brokers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("fxkafkatest: reserve a port: %v", err)
		}
		b.addrs = append(b.addrs, ln.Addr().String())
		b.ports = append(b.ports, ln.Addr().(*net.TCPAddr).Port)
		_ = ln.Close()
	}
	b.Up()
	t.Cleanup(b.Down)
	return b
}

// Addrs returns the brokers' addresses, the same before and after Down and Up.
func (b *Broker) Addrs() []string { return slices.Clone(b.addrs) }

// Config returns an fxkafka.Config for this broker, ready to pass to
// fxkafka.New or to fx.Replace. Its ProvisionBackoffMax is 100ms so that a
// test's pool notices Up quickly.
func (b *Broker) Config() fxkafka.Config {
	return fxkafka.Config{
		Brokers:             b.Addrs(),
		ProvisionBackoffMax: 100 * time.Millisecond,
	}
}

// Down stops the broker (every broker of the cluster): its ports refuse
// connections and open connections are closed, as in an outage. What it
// stored is kept for Up. Down on a stopped broker does nothing.
func (b *Broker) Down() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cluster != nil {
		b.cluster.Close()
		b.cluster = nil
	}
}

// Up starts the broker again on the same addresses, with what it stored
// before Down and the options it was made with. Up on a running broker does
// nothing. It fails the test if the broker cannot start.
func (b *Broker) Up() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cluster != nil {
		return
	}
	opts := []kfake.Opt{
		kfake.Ports(b.ports...),
		kfake.DataDir(b.dir),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(b.opts.partitions),
	}
	if len(b.opts.topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(b.opts.partitions), b.opts.topics...))
	}
	if b.opts.latency > 0 {
		opts = append(opts, kfake.ListenFn(netdelay.ListenFunc(b.opts.latency)))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		b.t.Fatalf("fxkafkatest: start broker on %s: %v", strings.Join(b.addrs, ","), err)
	}
	if err := spreadLeaders(c, b.opts.topics, b.opts.partitions, b.opts.brokers); err != nil {
		c.Close()
		b.t.Fatalf("fxkafkatest: start broker on %s: %v", strings.Join(b.addrs, ","), err)
	}
	b.cluster = c
}

// spreadLeaders makes broker p mod brokers the leader of partition p of each
// topic: kfake picks leaders at random, which would leave some brokers of a
// small cluster without any, and differ from run to run.
func spreadLeaders(c *kfake.Cluster, topics []string, partitions, brokers int) error {
	if brokers < 2 {
		return nil
	}
	for _, topic := range topics {
		for p := range int32(partitions) {
			if want := p % int32(brokers); c.LeaderFor(topic, p) != want {
				if err := c.MoveTopicPartition(topic, p, want); err != nil {
					return fmt.Errorf("lead %s/%d from broker %d: %w", topic, p, want, err)
				}
			}
		}
	}
	return nil
}

// Cluster returns the running kfake cluster, for fault injection
// (ControlKey, Fault); nil while the broker is down.
func (b *Broker) Cluster() *kfake.Cluster {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cluster
}

// HoldProduce makes the running broker keep every produce request
// unanswered until release is called, to test what a send does while its
// request is in flight: a deadline, Close, a full Produce buffer. held is
// closed when the first request is held. release may be called more than
// once; the test's cleanup calls it too, before the broker closes. The
// broker must be up.
func (b *Broker) HoldProduce() (held <-chan struct{}, release func()) {
	b.t.Helper()
	c := b.Cluster()
	if c == nil {
		b.t.Fatal("fxkafkatest: HoldProduce while the broker is down")
	}
	first, wake := make(chan struct{}), make(chan struct{})
	var seen sync.Once
	var released atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if !released.Load() {
			c.KeepControl()
			seen.Do(func() { close(first) })
			c.SleepControl(func() { <-wake })
		}
		return nil, nil, false
	})
	release = sync.OnceFunc(func() {
		released.Store(true)
		close(wake)
	})
	b.t.Cleanup(release)
	return first, release
}

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is a record as the broker stores it.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// ReadTopic waits until topic holds at least want records, then returns all
// it holds, ordered by partition and offset. If ctx ends first it returns
// what the topic holds with ctx's error. It needs the broker up.
func (b *Broker) ReadTopic(ctx context.Context, topic string, want int) ([]Record, error) {
	c := b.Cluster()
	if c == nil {
		return nil, fmt.Errorf("fxkafkatest: read %s: broker is down", topic)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var waitErr error
	for waitErr == nil && stored(c, topic) < int64(want) {
		select {
		case <-ctx.Done():
			waitErr = ctx.Err()
		case <-tick.C:
		}
	}
	recs, err := read(c, topic, stored(c, topic))
	if err == nil && waitErr != nil {
		err = fmt.Errorf("fxkafkatest: %s holds %d records, want %d: %w", topic, len(recs), want, waitErr)
	}
	return recs, err
}

// WaitForRecords is ReadTopic bounded by timeout, failing the test if the
// topic does not reach want records in time.
func (b *Broker) WaitForRecords(topic string, want int, timeout time.Duration) []Record {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	recs, err := b.ReadTopic(ctx, topic, want)
	if err != nil {
		b.t.Fatal(err)
	}
	return recs
}

// stored is the number of records topic holds: the sum of its partitions'
// high watermarks less their log start offsets.
func stored(c *kfake.Cluster, topic string) int64 {
	var n int64
	for _, pi := range c.PartitionInfos(topic) {
		n += pi.HighWatermark - pi.LogStartOffset
	}
	return n
}

// read consumes exactly n records of topic from the start.
func read(c *kfake.Cluster, topic string, n int64) ([]Record, error) {
	out := make([]Record, 0, n)
	if n == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return nil, fmt.Errorf("fxkafkatest: read %s: %w", topic, err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for int64(len(out)) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return out, fmt.Errorf("fxkafkatest: read %s: got %d of %d records: %w", topic, len(out), n, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			rec := Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
			for _, h := range r.Headers {
				rec.Headers = append(rec.Headers, Header{Key: h.Key, Value: h.Value})
			}
			out = append(out, rec)
		})
	}
	slices.SortFunc(out, func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return out, nil
}
