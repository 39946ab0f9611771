package benchkit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

// SyncProducer is one sarama SyncProducer shared by every sender: what the
// pool replaces. Sarama's defaults, with [SaramaConfig]'s changes.
func SyncProducer() SendImpl {
	return SendImpl{Name: "syncproducer", New: func(tb testing.TB, tgt Target) func() error {
		sp, err := sarama.NewSyncProducer(tgt.Addrs, SaramaConfig(tgt))
		if err != nil {
			tb.Fatalf("sarama.NewSyncProducer: %v", err)
		}
		tb.Cleanup(func() { _ = sp.Close() })
		return func() error {
			_, _, err := sp.SendMessage(Message())
			return err
		}
	}}
}

// FranzSync is one franz-go client shared by every sender, each calling
// ProduceSync: franz-go's defaults (idempotent, linger 10ms, which
// ProduceSync skips), or with kgo.DisableIdempotentWrite.
func FranzSync(idempotent bool) SendImpl {
	return SendImpl{Name: franzName(idempotent), New: func(tb testing.TB, tgt Target) func() error {
		cl := franzClient(tb, tgt, idempotent)
		ctx := context.Background()
		return func() error {
			return cl.ProduceSync(ctx, &kgo.Record{Topic: Topic, Value: Value}).FirstErr()
		}
	}}
}

// FranzAsync is a franz-go client driven by Produce with a promise, then
// Flush: franz-go's defaults (buffer of 50,000 records, snappy), idempotent
// or not.
func FranzAsync(idempotent bool) ProduceImpl {
	return franzAsync(franzName(idempotent), idempotent)
}

// FranzAsyncUncompressed is [FranzAsync] with franz-go's batches left
// uncompressed, as the pool's are by default: the like-for-like peer.
// [Value] is zeros, which snappy shrinks to almost nothing, so with its
// default codec franz-go writes, and kfake reads, a small fraction of the
// pool's bytes.
func FranzAsyncUncompressed(idempotent bool) ProduceImpl {
	return franzAsync(franzName(idempotent)+"-uncompressed", idempotent, kgo.ProducerBatchCompression(kgo.NoCompression()))
}

func franzAsync(name string, idempotent bool, opts ...kgo.Opt) ProduceImpl {
	return ProduceImpl{Name: name, New: func(tb testing.TB, tgt Target) Producer {
		cl := franzClient(tb, tgt, idempotent, opts...)
		ctx := context.Background()
		var failed Failures
		promise := func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(err)
			}
		}
		return Producer{
			Produce: func() { cl.Produce(ctx, &kgo.Record{Topic: Topic, Value: Value}, promise) },
			Flush: func() error {
				if err := cl.Flush(ctx); err != nil {
					return err
				}
				return failed.Take(0)
			},
		}
	}}
}

func franzName(idempotent bool) string {
	if idempotent {
		return "franz-go-idempotent"
	}
	return "franz-go"
}

func franzClient(tb testing.TB, tgt Target, idempotent bool, extra ...kgo.Opt) *kgo.Client {
	opts := append([]kgo.Opt{kgo.SeedBrokers(tgt.Addrs...), kgo.RequiredAcks(kgo.AllISRAcks())}, tgt.KgoOpts...)
	opts = append(opts, extra...)
	if !idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		tb.Fatalf("kgo.NewClient: %v", err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

// SaramaAsync is one sarama AsyncProducer: a goroutine writes Input, two
// drain Successes and Errors, and Flush waits until every message produced
// has come back on one of them. Sarama's defaults with [SaramaConfig]'s
// changes; idempotent as sarama requires it (one open request per
// connection).
func SaramaAsync(idempotent bool) ProduceImpl {
	name := "sarama-async"
	if idempotent {
		name += "-idempotent"
	}
	return ProduceImpl{Name: name, New: func(tb testing.TB, tgt Target) Producer {
		sc := SaramaConfig(tgt)
		if idempotent {
			sc.Producer.Idempotent = true
			sc.Net.MaxOpenRequests = 1
		}
		ap, err := sarama.NewAsyncProducer(tgt.Addrs, sc)
		if err != nil {
			tb.Fatalf("sarama.NewAsyncProducer: %v", err)
		}
		var (
			done     atomic.Int64
			failed   Failures
			progress = make(chan struct{}, 1) // a wake-up for Flush; one pending is enough
			wg       sync.WaitGroup
		)
		finished := func() {
			done.Add(1)
			select {
			case progress <- struct{}{}:
			default:
			}
		}
		wg.Go(func() {
			for range ap.Successes() {
				finished()
			}
		})
		wg.Go(func() {
			for pe := range ap.Errors() {
				failed.Add(pe.Err)
				finished()
			}
		})
		tb.Cleanup(func() {
			ap.AsyncClose()
			wg.Wait()
		})
		var produced int64 // only the producing goroutine touches it
		return Producer{
			Produce: func() {
				ap.Input() <- Message()
				produced++
			},
			Flush: func() error {
				for done.Load() < produced {
					<-progress
				}
				return failed.Take(0)
			},
		}
	}}
}
