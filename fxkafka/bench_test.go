package fxkafka

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"go.fxkafka.dev/internal/benchkit"
)

// The benchmarks here use the pool's public API only (New, SendMessage,
// Close, Stats, Config), so they measure whichever send path is in place.
// internal/benchcmp runs them one case per process, in interleaved rounds,
// beside the same cases against librdkafka's mock cluster
// (internal/rdkafka), and prints the table in the README.

var (
	sendRTTs    = []time.Duration{0, time.Millisecond, 5 * time.Millisecond}
	produceRTTs = []time.Duration{0, 5 * time.Millisecond}
	senderCount = []int{1, 16, 256}
)

// BenchmarkSend compares the pool (default Config, and Idempotent) with one
// shared sarama SyncProducer and franz-go's ProduceSync (idempotent and not)
// against kfake on loopback (3 brokers, 6 partitions) with 0, 1 and 5 ms of
// round trip on every request (internal/netdelay), 1, 16 and 256 senders
// each waiting for its acknowledgement, acks from all in-sync replicas
// everywhere, 100-byte values. It reports msgs/s and the p50 and p99 of a
// send's latency.
func BenchmarkSend(b *testing.B) {
	benchkit.Send(b, "kfake", benchkit.Kfake, sendRTTs, senderCount,
		poolSend(false), poolSend(true),
		benchkit.SyncProducer(), benchkit.FranzSync(false), benchkit.FranzSync(true),
	)
}

// BenchmarkProduce is the asynchronous peers of the pool's Produce: one
// goroutine hands b.N messages to franz-go's Produce (idempotent and not;
// with its default codec, snappy, and uncompressed like the pool's default)
// or to a sarama AsyncProducer (idempotent and not), then flushes, at 0 and
// 5 ms of round trip. It reports msgs/s and the peak heap.
// BenchmarkProducePool is the pool's side.
func BenchmarkProduce(b *testing.B) {
	benchkit.Produce(b, "kfake", benchkit.Kfake, produceRTTs,
		benchkit.FranzAsync(false), benchkit.FranzAsync(true),
		benchkit.FranzAsyncUncompressed(false), benchkit.FranzAsyncUncompressed(true),
		benchkit.SaramaAsync(false), benchkit.SaramaAsync(true),
	)
}

// poolSend is the pool with the default Config (and Idempotent if asked),
// its sends as a user writes them.
func poolSend(idempotent bool) benchkit.SendImpl {
	return benchkit.SendImpl{Name: poolName(idempotent), New: func(tb testing.TB, tgt benchkit.Target) func() error {
		p := benchPool(tb, tgt, idempotent)
		ctx := context.Background()
		return func() error {
			_, _, err := p.SendMessage(ctx, benchkit.Message())
			return err
		}
	}}
}

func poolName(idempotent bool) string {
	if idempotent {
		return "pool-idempotent"
	}
	return "pool"
}

// benchPool is a pool with the default Config for tgt, closed at cleanup.
func benchPool(tb testing.TB, tgt benchkit.Target, idempotent bool) *ProducerPool {
	tb.Helper()
	return newTestPool(tb, Config{Brokers: tgt.Addrs, Version: tgt.Version, Idempotent: idempotent})
}

// BenchmarkSendProducers measures what extra producers buy: the pool with
// its cap forced to 1, 2 and 4 producers (ProducerBusyAt 1, so every one is
// made), without latency and at 5 ms. It is the evidence for the pool's
// growth rule.
func BenchmarkSendProducers(b *testing.B) {
	for _, rtt := range []time.Duration{0, 5 * time.Millisecond} {
		b.Run(fmt.Sprintf("RTT=%dms", rtt.Milliseconds()), func(b *testing.B) {
			tgt := benchkit.Kfake(b, rtt)
			for _, senders := range []int{16, 256} {
				for _, producers := range []int{1, 2, 4} {
					b.Run(fmt.Sprintf("Producers=%d/Senders=%d", producers, senders), func(b *testing.B) {
						p, err := New(Config{Brokers: tgt.Addrs, MaxProducers: producers, ProducerBusyAt: 1})
						require.NoError(b, err)
						defer p.Close(context.Background())
						ctx := context.Background()
						send := func() error {
							_, _, err := p.SendMessage(ctx, benchkit.Message())
							return err
						}
						benchkit.WarmUp(b, senders, send)
						benchkit.RunSenders(b, senders, send)
						b.ReportMetric(float64(p.Stats().Producers), "producers")
					})
				}
			}
		})
	}
}

// BenchmarkSendDuringOutage is the cost of a send with nothing listening:
// the pool backs off after the first failure, so sends fail without dialing.
func BenchmarkSendDuringOutage(b *testing.B) {
	cfg := testConfig(freeAddr(b))
	cfg.ProvisionBackoffMax = time.Hour // stay in the backoff for the whole run
	p := newTestPool(b, cfg)
	ctx := context.Background()
	m := benchkit.Message()
	_, _, _ = p.SendMessage(ctx, m)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := p.SendMessage(ctx, m); err == nil {
			b.Fatal("send succeeded with nothing listening")
		}
	}
}

// BenchmarkProvisionAttemptWithNothingListening is the cost of the first
// send of a new pool when the dial is refused: one provisioning attempt,
// plus New and Close.
func BenchmarkProvisionAttemptWithNothingListening(b *testing.B) {
	cfg := testConfig(freeAddr(b))
	ctx := context.Background()
	m := benchkit.Message()
	b.ReportAllocs()
	for b.Loop() {
		p, err := New(cfg)
		require.NoError(b, err)
		if _, _, err := p.SendMessage(ctx, m); err == nil {
			b.Fatal("sent with nothing listening")
		}
		require.NoError(b, p.Close(ctx))
	}
}

// BenchmarkRecoveryAfterOutage measures how long after a broker comes back
// on the pool's address a continuous stream of sends (one per millisecond)
// succeeds again. The outage lasts long enough for the backoff to reach
// ProvisionBackoffMax (the default, 1s).
func BenchmarkRecoveryAfterOutage(b *testing.B) {
	var total time.Duration
	for b.Loop() {
		addr := freeAddr(b)
		p, err := New(Config{Brokers: []string{addr}})
		require.NoError(b, err)
		ctx := context.Background()
		m := benchkit.Message()
		for p.Stats().ProvisionFailures < 6 { // 0.1+0.2+0.4+0.8+1s: backoff at its cap
			_, _, _ = p.SendMessage(ctx, m)
			time.Sleep(time.Millisecond) // the send rate being measured, not a synchronisation
		}
		c := startBroker(b, addr, benchkit.Topic)
		up := time.Now()
		for {
			if _, _, err := p.SendMessage(ctx, m); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		total += time.Since(up)
		require.NoError(b, p.Close(ctx))
		c.Close()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "recovery-ms/op")
}

// BenchmarkHeapOverTenMillionMessages sends 10,000,000 small messages
// through the pool (256 senders, the benchmark cluster, which acknowledges
// without storing) and reports the live heap after the first 100,000, after
// 1,000,000 and after all of them: the pool keeps nothing per message once
// it is acknowledged, so the heap stays flat.
func BenchmarkHeapOverTenMillionMessages(b *testing.B) {
	p := benchPool(b, benchkit.Kfake(b, 0), false)
	ctx := context.Background()
	send := func(n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 256 {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if _, _, err := p.SendMessage(ctx, benchkit.Message()); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for b.Loop() {
		send(100_000)
		first := heap()
		send(900_000)
		million := heap()
		send(9_000_000)
		last := heap()
		b.ReportMetric(float64(first)/(1<<20), "heap-MiB-after-100k")
		b.ReportMetric(float64(million)/(1<<20), "heap-MiB-after-1M")
		b.ReportMetric(float64(last)/(1<<20), "heap-MiB-after-10M")
	}
}

// BenchmarkRoute is the pool's routing decision for one send: pick the
// least-loaded of four open producers.
func BenchmarkRoute(b *testing.B) {
	p, err := New(Config{Brokers: []string{"127.0.0.1:1"}})
	require.NoError(b, err)
	prods := make([]*producer, 4)
	for i := range prods {
		prods[i] = &producer{}
	}
	p.shared.Store(&prods)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.acquire(ctx, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
