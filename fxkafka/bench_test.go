package fxkafka

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

var benchValue = sarama.ByteEncoder(make([]byte, 100))

// runSenders runs b.N sends spread over senders goroutines and reports the
// throughput. send must be safe for concurrent use.
func runSenders(b *testing.B, senders int, send func() error) {
	b.Helper()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range senders {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := send(); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d sends failed", n)
	}
}

// BenchmarkSend compares the pool with what it replaces, one shared sarama
// SyncProducer, and with franz-go's ProduceSync, all against the same
// in-process kfake broker, with 100-byte values and every sender waiting for
// its acknowledgement (acks from all in-sync replicas everywhere).
// cmd/benchcmp runs it in interleaved rounds and prints median ratios.
func BenchmarkSend(b *testing.B) {
	c := startBroker(b, "", topic)
	addrs := c.ListenAddrs()
	msg := func() *sarama.ProducerMessage { return &sarama.ProducerMessage{Topic: topic, Value: benchValue} }
	for _, senders := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("Impl=pool/Senders=%d", senders), func(b *testing.B) {
			p := newTestPool(b, testConfig(addrs...))
			ctx := context.Background()
			runSenders(b, senders, func() error {
				_, _, err := p.SendMessage(ctx, msg())
				return err
			})
		})
		b.Run(fmt.Sprintf("Impl=pool-idempotent/Senders=%d", senders), func(b *testing.B) {
			cfg := testConfig(addrs...)
			cfg.Idempotent = true
			p := newTestPool(b, cfg)
			ctx := context.Background()
			runSenders(b, senders, func() error {
				_, _, err := p.SendMessage(ctx, msg())
				return err
			})
		})
		b.Run(fmt.Sprintf("Impl=syncproducer/Senders=%d", senders), func(b *testing.B) {
			// sarama's defaults, with the acks the pool uses and without
			// go-metrics, whose process-wide goroutine would fail the leak
			// check (the pool does without it too).
			sc := sarama.NewConfig()
			sc.Producer.Return.Successes = true
			sc.Producer.RequiredAcks = sarama.WaitForAll
			sc.MetricRegistry = nopRegistry{}
			sp, err := sarama.NewSyncProducer(addrs, sc)
			require.NoError(b, err)
			defer sp.Close()
			runSenders(b, senders, func() error {
				_, _, err := sp.SendMessage(msg())
				return err
			})
		})
		b.Run(fmt.Sprintf("Impl=franz-go/Senders=%d", senders), func(b *testing.B) {
			cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RequiredAcks(kgo.AllISRAcks()))
			require.NoError(b, err)
			defer cl.Close()
			ctx := context.Background()
			runSenders(b, senders, func() error {
				return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: benchValue}).FirstErr()
			})
		})
	}
}

// BenchmarkSendProducers measures what extra producers buy: the pool with
// its cap forced to 1, 2 and 4 producers (ProducerBusyAt 1, so every one is
// made). It is the evidence behind the default ProducerBusyAt.
func BenchmarkSendProducers(b *testing.B) {
	c := startBroker(b, "", topic)
	for _, senders := range []int{16, 256} {
		for _, producers := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("Producers=%d/Senders=%d", producers, senders), func(b *testing.B) {
				cfg := testConfig(c.ListenAddrs()...)
				cfg.MaxProducers, cfg.ProducerBusyAt = producers, 1
				p := newTestPool(b, cfg)
				ctx := context.Background()
				runSenders(b, senders, func() error {
					_, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: topic, Value: benchValue})
					return err
				})
			})
		}
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

// BenchmarkSendDuringOutage is the cost of a send with nothing listening:
// the pool backs off after the first failure, so sends fail without dialing.
func BenchmarkSendDuringOutage(b *testing.B) {
	cfg := testConfig(freeAddr(b))
	cfg.ProvisionBackoffMax = time.Hour // stay in the backoff for the whole run
	p := newTestPool(b, cfg)
	ctx := context.Background()
	m := &sarama.ProducerMessage{Topic: topic, Value: benchValue}
	_, _, _ = p.SendMessage(ctx, m)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := p.SendMessage(ctx, m); err == nil {
			b.Fatal("send succeeded with nothing listening")
		}
	}
}

// BenchmarkProvisionAttemptWithNothingListening is the cost of one failed
// provisioning attempt (dial refused), which a send pays when the backoff has
// expired.
func BenchmarkProvisionAttemptWithNothingListening(b *testing.B) {
	cfg := testConfig(freeAddr(b))
	p := newTestPool(b, cfg)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.newProducer(ctx, ""); err == nil {
			b.Fatal("provisioned with nothing listening")
		}
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
		m := &sarama.ProducerMessage{Topic: topic, Value: benchValue}
		for p.Stats().ProvisionFailures < 6 { // 0.1+0.2+0.4+0.8+1s: backoff at its cap
			_, _, _ = p.SendMessage(ctx, m)
			time.Sleep(time.Millisecond)
		}
		c := startBroker(b, addr, topic)
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

// BenchmarkHeapOverOneMillionMessages sends 1,000,000 small messages through
// the pool (256 senders, a broker that acknowledges without storing) and
// reports the live heap after the first 100,000 and after all of them: the
// pool keeps nothing per message once it is acknowledged.
func BenchmarkHeapOverOneMillionMessages(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic), kfake.BlackholeProduce())
	require.NoError(b, err)
	defer c.Close()
	p := newTestPool(b, testConfig(c.ListenAddrs()...))
	ctx := context.Background()
	send := func(n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 256 {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if _, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: topic, Value: benchValue}); err != nil {
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
		last := heap()
		b.ReportMetric(float64(first)/(1<<20), "heap-MiB-after-100k")
		b.ReportMetric(float64(last)/(1<<20), "heap-MiB-after-1M")
	}
}
