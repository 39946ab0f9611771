// Package benchkit is what fxkafka's send benchmarks share, so that every
// client is measured the same way against the same brokers: the broker
// set-ups, the synchronous and asynchronous harnesses, and the peers the pool
// is compared with (one shared sarama SyncProducer, sarama's AsyncProducer,
// franz-go). The pool itself is added by each benchmark file, through the
// public API only, so the benchmarks measure whichever engine is in place.
//
// Every benchmark has the same shape,
//
//	BenchmarkSend/Broker=kfake/RTT=5ms/Impl=pool/Senders=16
//	BenchmarkProduce/Broker=kfake/RTT=5ms/Impl=franz-go
//
// and internal/benchcmp runs them one case per process, in rotating order,
// and prints the medians. Like for like: acks from all in-sync replicas
// everywhere, 100-byte values, keyless messages, each client's default
// configuration otherwise, idempotent clients compared with idempotent ones.
package benchkit

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.fxkafka.dev/internal/nopmetrics"
)

// The shape of every benchmark cluster: a topic of 6 partitions led by 3
// brokers, as a small real cluster.
const (
	Topic      = "bench"
	Brokers    = 3
	Partitions = 6
)

// Value is the value of every message: 100 bytes.
var Value = make([]byte, 100)

// Target is how a client reaches a benchmark cluster.
type Target struct {
	// Addrs are the brokers' addresses, host:port.
	Addrs []string
	// Version is the Kafka version sarama-based clients speak ("" for their
	// default); librdkafka's mock cluster needs "2.1.0".
	Version string
	// KgoOpts are added to every franz-go client's options.
	KgoOpts []kgo.Opt
}

// StartFunc starts a cluster with the given round-trip time, closed at tb's
// cleanup.
type StartFunc func(tb testing.TB, rtt time.Duration) Target

// SendImpl is a client measured with synchronous senders.
type SendImpl struct {
	// Name is the benchmark's Impl=<name>.
	Name string
	// New returns a send function, safe for concurrent use, that sends one
	// message and waits for its acknowledgement. The client is closed at tb's
	// cleanup.
	New func(tb testing.TB, tgt Target) (send func() error)
}

// ProduceImpl is a client measured with one producing goroutine.
type ProduceImpl struct {
	// Name is the benchmark's Impl=<name>.
	Name string
	// New returns the client's asynchronous calls; it is closed at tb's
	// cleanup.
	New func(tb testing.TB, tgt Target) Producer
}

// Producer is an asynchronous client as the harness drives it, always from
// one goroutine.
type Producer struct {
	// Produce hands one message to the client, waiting only if its buffer
	// is full.
	Produce func()
	// Flush waits until every message produced so far has its outcome, and
	// returns an error if any of them failed.
	Flush func() error
}

// Send runs every implementation at every round-trip time and sender count,
// against a cluster that start makes once per round-trip time, as
// Broker=broker/RTT=<rtt>/Impl=<name>/Senders=<n>. Each case makes one
// client, warms it up ([WarmUp]) and keeps it for every run go test makes
// of the case, so that the run that counts measures a client in its steady
// state; it is closed when the case is over.
func Send(b *testing.B, broker string, start StartFunc, rtts []time.Duration, senders []int, impls ...SendImpl) {
	b.Run("Broker="+broker, func(b *testing.B) {
		for _, rtt := range rtts {
			b.Run(rttName(rtt), func(b *testing.B) {
				tgt := start(b, rtt)
				for _, impl := range impls {
					b.Run("Impl="+impl.Name, func(b *testing.B) {
						for _, n := range senders {
							var (
								k    *keeper
								send func() error
							)
							b.Run(fmt.Sprintf("Senders=%d", n), func(cb *testing.B) {
								if k == nil { // the first run: one client for every run of the case
									k = keep(cb, b)
									send = impl.New(k, tgt)
									WarmUp(cb, n, send)
								}
								RunSenders(cb, n, send)
							})
							if k != nil {
								k.finish()
							}
						}
					})
				}
			})
		}
	})
}

// Produce runs every implementation at every round-trip time, against a
// cluster that start makes once per round-trip time, as
// Broker=broker/RTT=<rtt>/Impl=<name>, each with one client for every run of
// the case, as [Send] does, warmed up by [WarmUpProducer].
func Produce(b *testing.B, broker string, start StartFunc, rtts []time.Duration, impls ...ProduceImpl) {
	b.Run("Broker="+broker, func(b *testing.B) {
		for _, rtt := range rtts {
			b.Run(rttName(rtt), func(b *testing.B) {
				tgt := start(b, rtt)
				for _, impl := range impls {
					var (
						k *keeper
						p Producer
					)
					b.Run("Impl="+impl.Name, func(cb *testing.B) {
						if k == nil { // the first run: one client for every run of the case
							k = keep(cb, b)
							p = impl.New(k, tgt)
							WarmUpProducer(cb, p)
						}
						RunProducer(cb, p)
					})
					if k != nil {
						k.finish()
					}
				}
			})
		}
	})
}

func rttName(rtt time.Duration) string { return fmt.Sprintf("RTT=%dms", rtt.Milliseconds()) }

// RunSenders runs b.N sends spread over senders goroutines, each waiting for
// its send before the next. It reports msgs/s, the p50 and p99 of one send's
// latency in milliseconds, and the allocations per send of the whole process
// (the client's, and an in-process broker's). A failed send fails the
// benchmark. Warm the client up first ([WarmUp]).
func RunSenders(b *testing.B, senders int, send func() error) {
	b.Helper()
	var (
		failed Failures
		wg     sync.WaitGroup
	)
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range senders {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(lat)) {
					return
				}
				t0 := time.Now()
				if err := send(); err != nil {
					failed.Add(err)
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Take(b.N); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(Percentile(lat, 50).Seconds()*1000, "p50-ms")
	b.ReportMetric(Percentile(lat, 99).Seconds()*1000, "p99-ms")
}

// RunProducer produces b.N messages from one goroutine and then flushes.
// It reports msgs/s and the peak of the heap during the run ([PeakHeap]) in
// MiB, and fails the benchmark if a message failed. Warm the client up
// first ([WarmUpProducer]).
func RunProducer(b *testing.B, p Producer) {
	b.Helper()
	peak := PeakHeap()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		p.Produce()
	}
	err := p.Flush()
	elapsed := time.Since(start)
	b.StopTimer()
	heap := peak()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MiB")
}

// The warm-up: long enough for every client to have opened its connections
// to every broker, fetched what it needs and settled its batching, whatever
// its partitioner.
const (
	warmUpFor      = 50 * time.Millisecond
	warmUpSenders  = 16   // at least, for a client with fewer senders
	warmUpEach     = 2    // sends per warm-up sender, at least
	warmUpMessages = 2000 // messages of an asynchronous warm-up
)

// WarmUp sends from max(senders, 16) goroutines until 50ms have passed and
// each has sent twice, and fails tb if a send fails.
func WarmUp(tb testing.TB, senders int, send func() error) {
	tb.Helper()
	var (
		failed   Failures
		wg       sync.WaitGroup
		deadline = time.Now().Add(warmUpFor)
	)
	for range max(senders, warmUpSenders) {
		wg.Go(func() {
			for i := 0; i < warmUpEach || time.Now().Before(deadline); i++ {
				if err := send(); err != nil {
					failed.Add(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Take(0); err != nil {
		tb.Fatalf("warm-up: %v", err)
	}
}

// WarmUpProducer produces 2,000 messages and flushes, and fails tb if one
// fails.
func WarmUpProducer(tb testing.TB, p Producer) {
	tb.Helper()
	for range warmUpMessages {
		p.Produce()
	}
	if err := p.Flush(); err != nil {
		tb.Fatalf("warm-up: %v", err)
	}
}

// Percentile returns the p-th percentile (0 < p <= 100) of xs, by the
// nearest-rank method; it sorts xs. It returns 0 for no samples.
func Percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	rank := int(math.Ceil(p/100*float64(len(xs)))) - 1
	return xs[max(0, min(rank, len(xs)-1))]
}

// SaramaConfig is sarama's default configuration with what every sarama
// client here shares: acks from all in-sync replicas, tgt's Version,
// successes returned, and no go-metrics (whose process-wide goroutine
// outlives every client, and which the pool does without too).
func SaramaConfig(tgt Target) *sarama.Config {
	sc := sarama.NewConfig()
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.MetricRegistry = nopmetrics.Registry{}
	if tgt.Version != "" {
		v, err := sarama.ParseKafkaVersion(tgt.Version)
		if err != nil {
			panic(fmt.Sprintf("benchkit: Target.Version %q: %v", tgt.Version, err))
		}
		sc.Version = v
	}
	return sc
}

// Message returns a new keyless benchmark message for sarama-based clients.
func Message() *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: Topic, Value: sarama.ByteEncoder(Value)}
}
